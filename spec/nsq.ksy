meta:
  id: nsq
  title: NSQ container for quantized language model weights, version 1.x
  file-extension: nsq
  ks-version: '0.11'
  endian: le
  bit-endian: le
doc: |
  The .nsq format of spec/nsq-format.md, version 1.4, which is the normative
  text; this description follows it section by section and names the rule
  (R-...) that each `valid` key enforces in that key's `doc`.

  Conventions of this description:
  * Fields of `size: 0` that only carry a `valid` key are assertions: they
    state a rule over fields already read, where no single field can carry it.
  * A type parameter named `prev_...` is a value of the previous element of
    the same repeated list (0 or -1 for the first), which lets a rule that
    relates neighbours (ordering, packing, layer tiling) be checked while the
    list is read.
  * Types named `..._finder` or `..._scan` search a list by recursion, the
    only loop Kaitai has (finding a section by kind, a metadata key, the
    refinement records of a block, the previous refinement part of a level).
  * Sections, blocks, refinement ranges and payloads are instances located by
    the offsets in the file: they, and the rules on them, are read when
    accessed. Reading every instance applies every rule stated here.
  * A Zstandard-compressed range is opaque bytes (`compressed`); the payloads
    of a range are described only where it is stored uncompressed (`raw`).
    So required bit 3 (LATTICE_E8S) set with no E8S stage is found only when
    no LATTICE payload lies in a compressed block (`lattice_e8s_used`).
  * u8 fields are exact in languages with 64-bit integers; Kaitai's
    JavaScript runtime reads them as doubles, exact up to 2^53, which covers
    every offset and size of a valid file (file_size <= 2^48) but not
    checksums.

  Not expressible here, and left to a reader (spec/nsq-format.md section 14):
  checksums (R-HDR-10, R-SEC-7, R-BLK-1), Zstandard frames (R-BLK-2), strict
  UTF-8 (R-META-7, R-IMP-2), the coverage rule (R-LAY-1..3, which needs the
  ranges sorted by offset), the required metadata keys and their values
  (R-META-11, R-META-12), and unique tensor names (R-TEN-13).
doc-ref: spec/nsq-format.md

seq:
  - id: header
    type: header
    size: 128
    doc: Section 3. A file shorter than 128 bytes fails here (R-HDR-5).
  - id: required_sections
    size: 0
    valid:
      expr: find_metadata.index >= 0 and find_tokenizer.index >= 0 and find_directory.index >= 0
    doc: Sections of kinds 1, 2 and 3 are present (R-SEC-6).
  - id: layers_match_metadata
    size: 0
    valid:
      expr: directory.blocks[directory.block_count - 2].layers_end == metadata.n_layers
    doc: |
      The LAYERS blocks tile exactly model.n_layers layers (R-DIR-9; the
      tiling itself is checked on each block record).
  - id: features_match
    size: 0
    valid:
      expr: >-
        ((header.required_features & 1) != 0) == directory.any_zstd
        and ((header.required_features & 2) != 0) == directory.any_lattice
        and ((header.required_features & 4) != 0) == directory.any_lattice_levels
        and ((header.required_features & 8) != 0 or not directory.any_lattice_e8s_part)
        and ((header.optional_features & 1) != 0) == (directory.refinement_count != 0)
        and ((header.optional_features & 2) != 0) == (find_importance.index >= 0)
        and ((header.optional_features & 4) != 0) == (find_router.index >= 0)
    doc: |
      The known feature bits agree with the content (R-HDR-11, section 3.2).
      Bit 3 (LATTICE_E8S) only against the refinement parts here: each
      LATTICE payload checks it against its own stage kinds, and the
      instance lattice_e8s_used checks that some stage has kind 4 when it is
      set.

instances:
  section_table:
    pos: header.section_table_offset
    type: 'section_entry(_index, _index == 0 ? 0 : section_table[_index - 1].end)'
    repeat: expr
    repeat-expr: header.section_count
    doc: Section 4; located by the header (R-HDR-8).
  find_metadata:
    pos: 0
    type: section_finder(1, 0, header.section_count)
  find_tokenizer:
    pos: 0
    type: section_finder(2, 0, header.section_count)
  find_directory:
    pos: 0
    type: section_finder(3, 0, header.section_count)
  find_importance:
    pos: 0
    type: section_finder(4, 0, header.section_count)
  find_router:
    pos: 0
    type: section_finder(5, 0, header.section_count)
  metadata:
    value: section_table[find_metadata.index].body.as<metadata>
    if: find_metadata.index >= 0
  tokenizer:
    value: section_table[find_tokenizer.index].body.as<tokenizer>
    if: find_tokenizer.index >= 0
  directory:
    value: section_table[find_directory.index].body.as<directory>
    if: find_directory.index >= 0
  importance:
    value: section_table[find_importance.index].body.as<importance>
    if: find_importance.index >= 0
  router:
    value: section_table[find_router.index].body.as<router>
    if: find_router.index >= 0
  lattice_e8s_used:
    pos: 0
    size: 0
    if: (header.required_features & 8) != 0
    valid:
      expr: directory.any_lattice_e8s_part or e8s_payloads.e8s_or_opaque
    doc: |
      With required bit 3 (LATTICE_E8S) set, some stage of a LATTICE payload
      or refinement part has kind 4 (R-HDR-11, section 3.2: full
      verification). Payloads in compressed blocks are opaque here: such a
      payload could hold the stage, so the rule is not applied then.
  e8s_payloads:
    pos: 0
    type: e8s_payload_scan(0)
    if: (header.required_features & 8) != 0
    doc: Whether a LATTICE payload has a stage of kind 4 (for lattice_e8s_used).

types:
  # ---- section 3: header -------------------------------------------------
  header:
    seq:
      - id: magic
        contents: [0x89, 0x4e, 0x53, 0x51, 0x0d, 0x0a, 0x1a, 0x0a]
        doc: R-HDR-1
      - id: version_major
        type: u2
        valid: 1
        doc: R-HDR-2
      - id: version_minor
        type: u2
        doc: Any value; decides whether the reserved bytes are checked (R-HDR-9).
      - id: header_size
        type: u4
        valid: 128
        doc: R-HDR-3
      - id: required_features
        type: u8
        valid:
          max: 15
        doc: |
          Bits 0 (ZSTD), 1 (LATTICE), 2 (LATTICE_LEVELS) and 3 (LATTICE_E8S)
          are the only bits defined (R-HDR-4).
      - id: optional_features
        type: u8
        doc: Bits 0 REFINEMENTS, 1 IMPORTANCE, 2 ROUTER; others ignored.
      - id: file_size
        type: u8
        valid:
          expr: _ == _root._io.size and _ <= 0x1000000000000
        doc: The file's length, at most 2^48 (R-HDR-5).
      - id: section_table_offset
        type: u8
        valid:
          expr: _ % 8 == 0 and _ >= 128
        doc: R-HDR-8
      - id: section_count
        type: u4
        valid:
          min: 3
          max: 64
        doc: R-HDR-6
      - id: section_entry_size
        type: u4
        valid: 32
        doc: R-HDR-7
      - id: header_checksum
        type: u8
        doc: XXH3-64 of header, section table and directory (R-HDR-10; not checked here).
      - id: reserved
        size: 64
        valid:
          expr: version_minor > 4 or _.max == 0
        doc: |
          Bytes 64..127 are all zero, or version_minor is above 4, this
          description's minor version (R-HDR-9).
      - id: table_in_file
        size: 0
        valid:
          expr: section_table_offset + 32 * section_count <= file_size
        doc: R-HDR-8

  # ---- section 4: section table ------------------------------------------
  section_entry:
    params:
      - id: index
        type: u4
      - id: prev_end
        type: u8
    seq:
      - id: kind
        type: u4
        enum: section_kind
        valid:
          expr: _.to_i != 0
        doc: R-SEC-2
      - id: flags
        type: u4
        valid: 0
        doc: R-SEC-1
      - id: offset
        type: u8
        valid:
          expr: _ % 8 == 0
        doc: R-SEC-4
      - id: size
        type: u8
        valid:
          expr: _ >= 1 and _ <= cap
        doc: 1 up to the cap of the kind (R-SEC-3, section 4.2).
      - id: checksum
        type: u8
        doc: XXH3-64 of the section's bytes (R-SEC-7; not checked here).
      - id: in_file
        size: 0
        valid:
          expr: offset + size <= _root.header.file_size
        doc: R-SEC-4
      - id: after_previous
        size: 0
        valid:
          expr: offset >= prev_end
        doc: Increasing offsets, no overlap with the previous section (R-SEC-5).
      - id: earlier_same_kind
        type: section_finder(kind.to_i, 0, index)
        valid:
          expr: _.index == -1
        doc: No earlier entry has this kind (R-SEC-2).
    instances:
      end:
        value: offset + size
      cap:
        value: >-
          kind == section_kind::metadata ? 0x4000000
          : (kind == section_kind::importance or kind.to_i >= 6) ? 0x100000000
          : 0x10000000
      body:
        io: _root._io
        pos: offset
        size: size
        type:
          switch-on: kind
          cases:
            'section_kind::metadata': metadata
            'section_kind::tokenizer': tokenizer
            'section_kind::directory': directory
            'section_kind::importance': importance
            'section_kind::router': router
        doc: Sections of unknown kinds (6 and above) are opaque bytes.

  section_finder:
    doc: Index of the first entry of `kind` among entries i .. limit-1, or -1.
    params:
      - id: kind
        type: u4
      - id: i
        type: u4
      - id: limit
        type: u4
    seq:
      - id: next
        type: section_finder(kind, i + 1, limit)
        if: i < limit and _root.section_table[i].kind.to_i != kind
    instances:
      index:
        value: 'i >= limit ? -1 : _root.section_table[i].kind.to_i == kind ? i : next.index.as<s4>'

  # ---- section 5: metadata -----------------------------------------------
  metadata:
    seq:
      - id: entry_count
        type: u4
        valid:
          expr: _ >= 1 and _ <= 65536 and _ <= _io.size / 5
        doc: R-META-1 (a section shorter than 4 bytes fails here too).
      - id: entries
        type: 'meta_entry(_index == 0 ? "" : entries[_index - 1].key.text)'
        repeat: expr
        repeat-expr: entry_count
        doc: Truncated entries fail here (R-META-2, R-META-5).
      - id: trailing
        size-eos: true
        valid:
          expr: _.length == 0
        doc: The last entry ends the section (R-META-10).
    instances:
      find_n_layers:
        pos: 0
        type: meta_finder(_root.metadata, "model.n_layers", 0)
      find_hidden_size:
        pos: 0
        type: meta_finder(_root.metadata, "model.hidden_size", 0)
      n_layers:
        value: entries[find_n_layers.index].values[0].u64_value
        if: find_n_layers.index >= 0
        doc: Used by the layer tiling rule (R-DIR-9).
      hidden_size:
        value: entries[find_hidden_size.index].values[0].u64_value
        if: find_hidden_size.index >= 0
        doc: Used by the router (R-RTR-2).

  meta_finder:
    doc: Index of the entry whose key is `key`, searching from entry i, or -1.
    params:
      - id: metadata
        type: metadata
      - id: key
        type: str
      - id: i
        type: u4
    seq:
      - id: next
        type: meta_finder(metadata, key, i + 1)
        if: i < metadata.entry_count and metadata.entries[i].key.text != key
    instances:
      index:
        value: >-
          i >= metadata.entry_count ? -1
          : metadata.entries[i].key.text == key ? i : next.index.as<s4>

  meta_entry:
    params:
      - id: prev_key
        type: str
    seq:
      - id: key_len
        type: u2
        valid:
          min: 1
          max: 128
        doc: R-META-3
      - id: key
        size: key_len
        type: meta_key
        doc: R-META-2, R-META-3
      - id: key_sorted
        size: 0
        valid:
          expr: key.text > prev_key
        doc: Keys strictly increasing, bytewise (R-META-4).
      - id: type
        type: u1
        valid:
          any-of: [0x01, 0x02, 0x03, 0x04, 0x05, 0x81, 0x82, 0x83, 0x84, 0x85]
        doc: Element type 1..5, plus 0x80 for an array (R-META-9).
      - id: count
        type: u4
        if: is_array
        valid:
          max: 0x1000000
        doc: R-META-6
      - id: values
        type: meta_value(element_type)
        repeat: expr
        repeat-expr: 'is_array ? count : 1'
        doc: One element for a scalar, `count` for an array.
    instances:
      is_array:
        value: type >= 0x80
      element_type:
        value: type & 0x7f
        enum: meta_type

  meta_key:
    doc: Key syntax of section 1.7 (a-z 0-9 _ and non-empty segments split by dots).
    seq:
      - id: chars
        type: 'key_char(_index == 0 ? 0x2e : chars[_index - 1].c, _index == _io.size - 1)'
        repeat: eos
    instances:
      text:
        pos: 0
        size-eos: true
        type: str
        encoding: ASCII

  key_char:
    params:
      - id: prev
        type: u1
      - id: last
        type: bool
    seq:
      - id: c
        type: u1
        valid:
          expr: >-
            (_ >= 0x61 and _ <= 0x7a) or (_ >= 0x30 and _ <= 0x39) or _ == 0x5f
            or (_ == 0x2e and prev != 0x2e and not last)
        doc: R-META-3

  meta_value:
    params:
      - id: element_type
        type: u1
        enum: meta_type
    seq:
      - id: u64_value
        type: u8
        if: element_type == meta_type::u64
      - id: i64_value
        type: s8
        if: element_type == meta_type::i64
      - id: f64_value
        type: f8
        if: element_type == meta_type::f64
        valid:
          expr: _ - _ == 0
        doc: Finite (R-META-8).
      - id: bool_value
        type: u1
        if: element_type == meta_type::bool
        valid:
          max: 1
        doc: R-META-8
      - id: string_len
        type: u4
        if: element_type == meta_type::string
        valid:
          max: 0x1000000
        doc: R-META-6
      - id: string_value
        size: string_len
        type: str
        encoding: UTF-8
        if: element_type == meta_type::string
        doc: Strict UTF-8 without NUL (R-META-7; not checked here).

  # ---- section 6: tokenizer ----------------------------------------------
  tokenizer:
    seq:
      - id: kind
        type: u4
        enum: tokenizer_kind
        valid:
          any-of:
            - tokenizer_kind::hf_json
            - tokenizer_kind::gpt2_bpe
            - tokenizer_kind::sentencepiece
        doc: R-TOK-1 (a section shorter than 8 bytes fails here too).
      - id: file_count
        type: u4
        valid:
          min: 1
          max: 16
        doc: R-TOK-2
      - id: files
        type: >-
          tokenizer_file(_index == 0 ? "" : files[_index - 1].name.text,
          _index == 0 ? 0 : files[_index - 1].required_seen)
        repeat: expr
        repeat-expr: file_count
        doc: Truncated entries fail here (R-TOK-3).
      - id: trailing
        size-eos: true
        valid:
          expr: _.length == 0
        doc: The last file ends the section (R-TOK-6).
      - id: required_files
        size: 0
        valid:
          expr: (files.last.required_seen & required_mask) == required_mask
        doc: The files that `kind` requires are present (R-TOK-7).
    instances:
      required_mask:
        value: >-
          kind == tokenizer_kind::hf_json ? 1
          : kind == tokenizer_kind::gpt2_bpe ? 6 : 8
        doc: Bits of tokenizer_file.required_seen.

  tokenizer_file:
    params:
      - id: prev_name
        type: str
      - id: prev_required_seen
        type: u1
    seq:
      - id: name_len
        type: u2
        valid:
          min: 1
          max: 255
        doc: R-TOK-4
      - id: name
        size: name_len
        type: file_name
        doc: R-TOK-4
      - id: name_sorted
        size: 0
        valid:
          expr: name.text > prev_name
        doc: Names strictly increasing, bytewise (R-TOK-5).
      - id: size
        type: u8
      - id: data
        size: size
        doc: The file's contents, unmodified (R-TOK-3).
    instances:
      required_seen:
        value: >-
          prev_required_seen
          | (name.text == "tokenizer.json" ? 1 : 0)
          | (name.text == "merges.txt" ? 2 : 0)
          | (name.text == "vocab.json" ? 4 : 0)
          | (name.text == "tokenizer.model" ? 8 : 0)
        doc: The required file names met so far, one bit each (R-TOK-7).

  file_name:
    doc: Tokenizer file name syntax of section 1.7.
    seq:
      - id: chars
        type: u1
        repeat: eos
        valid:
          expr: >-
            (_ >= 0x41 and _ <= 0x5a) or (_ >= 0x61 and _ <= 0x7a)
            or (_ >= 0x30 and _ <= 0x39) or _ == 0x2e or _ == 0x5f or _ == 0x2d
        doc: R-TOK-4
    instances:
      text:
        pos: 0
        size-eos: true
        type: str
        encoding: ASCII

  # ---- section 7: directory ----------------------------------------------
  directory:
    seq:
      - id: block_count
        type: u4
        valid:
          expr: _ >= 2 and _ <= 65536 and 64 * _ <= _io.size - 16
        doc: R-DIR-2 (a section shorter than 16 bytes fails here, R-DIR-1).
      - id: refinement_count
        type: u4
        valid:
          expr: _ <= 16 * block_count and 64 * block_count + 48 * _ <= _io.size - 16
        doc: R-DIR-2
      - id: tensor_count
        type: u4
        valid:
          expr: _ >= 1 and _ <= 1048576 and _ <= (_io.size - 16) / 35
        doc: R-DIR-2
      - id: reserved
        type: u4
        valid: 0
        doc: R-DIR-3
      - id: blocks
        type: >-
          block_record(_index,
          _index == 0 ? 0 : blocks[_index - 1].layers_end,
          _index == 0 ? false : blocks[_index - 1].zstd_so_far)
        repeat: expr
        repeat-expr: block_count
      - id: refinements
        type: >-
          refinement_record(_index == 0 ? -1 : refinements[_index - 1].block,
          _index == 0 ? 0 : refinements[_index - 1].level,
          _index == 0 ? false : refinements[_index - 1].zstd_so_far)
        repeat: expr
        repeat-expr: refinement_count
      - id: tensors
        type: >-
          tensor_record(_index, _index == 0 ? -1 : tensors[_index - 1].block,
          _index == 0 ? 0 : tensors[_index - 1].end,
          _index == 0 ? false : tensors[_index - 1].lattice_so_far,
          _index == 0 ? false : tensors[_index - 1].lattice_levels_so_far,
          _index == 0 ? false : tensors[_index - 1].lattice_e8s_part_so_far)
        repeat: expr
        repeat-expr: tensor_count
        doc: A record that does not fit fails here (R-DIR-11).
      - id: trailing
        size-eos: true
        valid:
          expr: _.length == 0
        doc: The last tensor record ends the section (R-DIR-12).
      - id: last_block_filled
        size: 0
        valid:
          expr: >-
            tensors.last.block == block_count - 1
            and tensors.last.end == blocks[block_count - 1].raw_size
        doc: |
          The last block has tensors and its payloads end at its raw_size
          (R-TEN-11; earlier blocks are checked where the next block's run
          starts).
    instances:
      any_zstd:
        value: >-
          blocks.last.zstd_so_far
          or (refinement_count > 0 and refinements.last.zstd_so_far)
        doc: Some range is compressed (the ZSTD feature, R-HDR-11).
      any_lattice:
        value: tensors.last.lattice_so_far
        doc: Some tensor is LATTICE (the LATTICE feature, R-HDR-11).
      any_lattice_levels:
        value: tensors.last.lattice_levels_so_far
        doc: |
          Some LATTICE tensor has refinement levels (the LATTICE_LEVELS
          feature, R-HDR-11).
      any_lattice_e8s_part:
        value: tensors.last.lattice_e8s_part_so_far
        doc: |
          Some LATTICE refinement part has a stage of kind 4 (E8S), which
          needs the LATTICE_E8S feature (R-HDR-11).

  block_record:
    params:
      - id: index
        type: u4
      - id: prev_layers_end
        type: u4
      - id: prev_zstd
        type: bool
    seq:
      - id: kind
        type: u4
        enum: block_kind
        valid:
          expr: >-
            index == 0 ? _ == block_kind::embeddings
            : index == _parent.block_count - 1 ? _ == block_kind::output
            : _ == block_kind::layers
        doc: EMBEDDINGS, LAYERS..., OUTPUT (R-DIR-4).
      - id: first_layer
        type: u4
      - id: n_layers
        type: u4
      - id: compression
        type: u4
        enum: compression
        valid:
          any-of: [compression::none, compression::zstd]
        doc: R-DIR-5
      - id: offset
        type: u8
        valid:
          expr: _ % 4096 == 0
        doc: R-DIR-6
      - id: stored_size
        type: u8
        valid:
          expr: _ >= 1 and offset + _ <= _root.header.file_size
        doc: R-DIR-6
      - id: raw_size
        type: u8
        valid:
          min: 1
          max: 0x1000000000
        doc: R-DIR-7
      - id: checksum
        type: u8
        doc: XXH3-64 of the stored bytes (R-BLK-1; not checked here).
      - id: reserved
        size: 16
        valid:
          expr: _.max == 0
        doc: R-DIR-3
      - id: sizes_agree
        size: 0
        valid:
          expr: >-
            compression == compression::none ? stored_size == raw_size
            : raw_size / 1024 <= stored_size
        doc: R-DIR-8
      - id: layers_tiled
        size: 0
        valid:
          expr: >-
            kind == block_kind::layers ? (n_layers >= 1 and first_layer == prev_layers_end)
            : (first_layer == 0 and n_layers == 0)
        doc: R-DIR-9
    instances:
      layers_end:
        value: first_layer + n_layers
      zstd_so_far:
        value: prev_zstd or compression == compression::zstd
      raw:
        io: _root._io
        pos: offset
        size: stored_size
        type: raw_range
        if: compression == compression::none
        doc: The block's raw bytes; tensor records locate payloads in them.
      compressed:
        io: _root._io
        pos: offset
        size: stored_size
        if: compression == compression::zstd
        doc: One Zstandard frame of raw_size bytes (R-BLK-2; opaque here).
      ref_start:
        value: 'index == 0 ? 0 : _parent.blocks[index - 1].ref_end.as<u4>'
        doc: Index of the block's first refinement record.
      refinement_scan:
        pos: 0
        type: refinement_scan(_parent, index, ref_start)
      ref_end:
        value: refinement_scan.end
      n_levels:
        value: ref_end - ref_start
        doc: The block's refinement count L(b) (section 7.4).

  refinement_scan:
    doc: Index after the last refinement record of `block`, starting at record k.
    params:
      - id: dir
        type: directory
      - id: block
        type: u4
      - id: k
        type: u4
    seq:
      - id: next
        type: refinement_scan(dir, block, k + 1)
        if: has_more
    instances:
      has_more:
        value: k < dir.refinement_count and dir.refinements[k].block == block
      end:
        value: 'has_more ? next.end.as<u4> : k'

  part_finder:
    doc: |
      End of the last part of `level` in `block` among tensor records j, j-1,
      ... (records of later blocks are passed over), or 0 when there is none.
    params:
      - id: dir
        type: directory
      - id: level
        type: u4
      - id: block
        type: u4
      - id: j
        type: s8
    seq:
      - id: next
        type: part_finder(dir, level, block, j - 1)
        if: j >= 0 and not found and dir.tensors[j].block >= block
    instances:
      found:
        value: j >= 0 and dir.tensors[j].block == block and dir.tensors[j].n_refine >= level
      end:
        value: >-
          found ? dir.tensors[j].refine[level - 1].end
          : (j >= 0 and dir.tensors[j].block >= block) ? next.end.as<u8> : 0

  raw_range:
    doc: The uncompressed bytes of a block or refinement range.
    seq: []

  refinement_record:
    params:
      - id: prev_block
        type: s8
      - id: prev_level
        type: u4
      - id: prev_zstd
        type: bool
    seq:
      - id: block
        type: u4
        valid:
          expr: _ < _parent.block_count and _ >= prev_block
        doc: R-DIR-10
      - id: level
        type: u4
        valid:
          expr: '_ == (block == prev_block ? prev_level + 1 : 1) and _ <= 16'
        doc: Levels 1, 2, ... of each block, in order (R-DIR-10).
      - id: compression
        type: u4
        enum: compression
        valid:
          any-of: [compression::none, compression::zstd]
        doc: R-DIR-5
      - id: reserved
        type: u4
        valid: 0
        doc: R-DIR-3
      - id: offset
        type: u8
        valid:
          expr: _ % 4096 == 0
        doc: R-DIR-6
      - id: stored_size
        type: u8
        valid:
          expr: _ >= 1 and offset + _ <= _root.header.file_size
        doc: R-DIR-6
      - id: raw_size
        type: u8
        valid:
          min: 1
          max: 0x1000000000
        doc: R-DIR-7
      - id: checksum
        type: u8
        doc: XXH3-64 of the stored bytes (R-BLK-1; not checked here).
      - id: sizes_agree
        size: 0
        valid:
          expr: >-
            compression == compression::none ? stored_size == raw_size
            : raw_size / 1024 <= stored_size
        doc: R-DIR-8
    instances:
      zstd_so_far:
        value: prev_zstd or compression == compression::zstd
      last_part:
        pos: 0
        type: part_finder(_parent, level, block, _parent.tensor_count - 1)
        valid:
          expr: _.end == raw_size
        doc: |
          The level's parts end at its raw_size, so it has at least one
          (R-TEN-11).
      raw:
        io: _root._io
        pos: offset
        size: stored_size
        type: raw_range
        if: compression == compression::none
      compressed:
        io: _root._io
        pos: offset
        size: stored_size
        if: compression == compression::zstd
        doc: One Zstandard frame of raw_size bytes (R-BLK-2; opaque here).

  tensor_record:
    params:
      - id: index
        type: u4
      - id: prev_block
        type: s8
      - id: prev_end
        type: u8
      - id: prev_lattice
        type: bool
      - id: prev_lattice_levels
        type: bool
      - id: prev_lattice_e8s_part
        type: bool
    seq:
      - id: name_len
        type: u2
        valid:
          min: 1
          max: 256
        doc: R-TEN-1
      - id: name
        size: name_len
        type: tensor_name
        doc: R-TEN-1
      - id: scheme
        type: u1
        enum: scheme
        valid:
          any-of: [scheme::f32, scheme::f16, scheme::bf16, scheme::tiered, scheme::lattice]
        doc: R-TEN-2
      - id: n_dims
        type: u1
        valid:
          min: 1
          max: 4
        doc: R-TEN-4
      - id: block
        type: u4
        valid:
          expr: _ < _parent.block_count
        doc: R-TEN-3
      - id: group_size
        type: u4
        valid:
          expr: >-
            scheme == scheme::tiered ? (_ == 32 or _ == 64 or _ == 128 or _ == 256)
            : scheme == scheme::lattice ? (_ >= 8 and _ <= 16384 and (_ & (_ - 1)) == 0)
            : _ == 0
        doc: |
          0 unless TIERED or LATTICE (R-TEN-5); 32, 64, 128 or 256 for TIERED,
          a power of two in 8..16384 for LATTICE (R-TEN-7).
      - id: n_refine
        type: u1
        valid:
          expr: _ <= 16 and (scheme == scheme::tiered or scheme == scheme::lattice or _ == 0)
        doc: At most 16 (R-TEN-4), 0 unless TIERED or LATTICE (R-TEN-5).
      - id: reserved
        size: 5
        valid:
          expr: _.max == 0
        doc: R-DIR-3
      - id: dims
        type: u8
        repeat: expr
        repeat-expr: n_dims
        valid:
          min: 1
          max: 0xffffffff
        doc: Outermost first (R-TEN-4).
      - id: offset
        type: u8
        doc: Position in the block's raw bytes.
      - id: size
        type: u8
      - id: refine
        type: >-
          refinement_part(_index + 1, _index == 0 ? 0 : refine[_index - 1].stages_so_far,
          _index == 0 ? false : refine[_index - 1].e8s_so_far)
        repeat: expr
        repeat-expr: n_refine
        doc: Parts of levels 1..n_refine.
      - id: element_limit
        size: 0
        valid:
          expr: n_elements <= 0x10000000000
        doc: R-TEN-4
      - id: tiered_shape
        size: 0
        valid:
          expr: >-
            (scheme != scheme::tiered and scheme != scheme::lattice)
            or (n_dims == 2 and cols % group_size == 0)
        doc: R-TEN-7
      - id: lattice_sizes
        type: 'lattice_size_scan(size, n_elements / cols, cols, group_size, 0)'
        if: scheme == scheme::lattice
        doc: Whether some list of stages has this payload size (R-TEN-6).
      - id: size_fits_shape
        size: 0
        valid:
          expr: >-
            scheme == scheme::f32 ? size == 4 * n_elements
            : scheme == scheme::lattice ? lattice_sizes.some_list
            : scheme != scheme::tiered ? size == 2 * n_elements
            : (size >= (map_len + 63) / 64 * 64 + n_groups * (group_size / 4 + 4)
            and size <= (map_len + 63) / 64 * 64 + n_groups * 2 * group_size + 7 * 63)
        doc: R-TEN-6
      - id: levels_exist
        size: 0
        valid:
          expr: n_refine <= _parent.blocks[block].n_levels
        doc: R-TEN-8
      - id: block_order
        size: 0
        valid:
          expr: block >= prev_block
        doc: Records grouped by block in block order (R-TEN-12).
      - id: no_block_skipped
        size: 0
        valid:
          expr: block <= prev_block + 1
        doc: Every block has a tensor (R-TEN-11).
      - id: previous_block_filled
        size: 0
        valid:
          expr: block == prev_block or prev_block < 0 or prev_end == _parent.blocks[prev_block].raw_size
        doc: The previous block's payloads end at its raw_size (R-TEN-11).
      - id: packed
        size: 0
        valid:
          expr: offset == pad_start + 63 - (pad_start + 63) % 64
        doc: At the next multiple of 64 after the previous payload (R-TEN-10).
    instances:
      n_elements:
        value: >-
          dims[0] * (n_dims > 1 ? dims[1] : 1) * (n_dims > 2 ? dims[2] : 1)
          * (n_dims > 3 ? dims[3] : 1)
      cols:
        value: dims[n_dims - 1]
      n_groups:
        value: 'scheme == scheme::tiered or scheme == scheme::lattice ? n_elements / group_size : 0'
      lattice_so_far:
        value: prev_lattice or scheme == scheme::lattice
        doc: This or an earlier tensor is LATTICE.
      lattice_levels_so_far:
        value: prev_lattice_levels or (scheme == scheme::lattice and n_refine > 0)
        doc: This or an earlier tensor is LATTICE with refinement levels.
      lattice_e8s_part_so_far:
        value: 'prev_lattice_e8s_part or (n_refine == 0 ? false : refine.last.e8s_so_far)'
        doc: A refinement part of this or an earlier tensor has an E8S stage.
      rows:
        value: n_elements / cols
        doc: Rows of a 2-D tensor (TIERED, LATTICE).
      part_stages:
        value: 'n_refine == 0 ? 0 : refine.last.stages_so_far'
        doc: The stages that a LATTICE tensor's refinement parts add, all levels together.
      map_len:
        value: (n_groups + 3) / 4
        doc: Unpadded tier map length.
      end:
        value: offset + size
      pad_start:
        value: 'block == prev_block ? prev_end : 0'
        doc: Where the padding before this payload starts.
      range:
        value: _parent.blocks[block]
      padding_before:
        io: range.raw._io
        pos: pad_start
        size: offset - pad_start
        if: range.compression == compression::none
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-BLK-3
      plain_payload:
        io: range.raw._io
        pos: offset
        size: size
        type: 'plain_payload(scheme == scheme::f32 ? 4 : 2, n_elements)'
        if: >-
          range.compression == compression::none
          and scheme != scheme::tiered and scheme != scheme::lattice
        doc: F32, F16 or BF16 values, row-major (section 9.2).
      tiered_payload:
        io: range.raw._io
        pos: offset
        size: size
        type: tiered_payload(n_groups, group_size)
        if: range.compression == compression::none and scheme == scheme::tiered
        doc: Section 9.3.
      lattice_payload:
        io: range.raw._io
        pos: offset
        size: size
        type: lattice_payload(rows, cols, group_size, part_stages)
        if: range.compression == compression::none and scheme == scheme::lattice
        doc: Section 9.10.

  tensor_name:
    seq:
      - id: bytes
        size-eos: true
        valid:
          expr: _.min >= 0x21 and _.max <= 0x7e
        doc: Printable ASCII other than space (R-TEN-1).
    instances:
      text:
        pos: 0
        size-eos: true
        type: str
        encoding: ASCII

  refinement_part:
    doc: |
      A tensor's part of refinement level `level` (section 7.5): the bits of
      its refinement codes for a TIERED tensor, the stages it adds for a
      LATTICE tensor (sections 8.4, 9.10).
    params:
      - id: level
        type: u4
      - id: prev_stages
        type: u1
        doc: LATTICE - the stages of the tensor's parts of levels 1..level-1.
      - id: prev_e8s
        type: bool
        doc: LATTICE - whether a part of levels 1..level-1 has an E8S stage.
    seq:
      - id: bits
        type: u1
        if: not is_lattice
        valid:
          any-of: [1, 2, 4, 8]
        doc: TIERED - bits per refinement code (R-TEN-9).
      - id: n_stages
        type: u1
        if: is_lattice
        doc: LATTICE - how many stages this level adds, 0..3 (R-TEN-9, checked below).
      - id: kinds
        type: u1
        repeat: expr
        repeat-expr: 3
        if: is_lattice
        doc: LATTICE - the kinds of the part's stages (enum lattice_kind); 0 past n_stages.
      - id: reserved
        size: 'is_lattice ? 4 : 7'
        valid:
          expr: _.max == 0
        doc: Bytes 1..7, or 4..7 for a LATTICE tensor (R-DIR-3).
      - id: lattice_form
        size: 0
        if: is_lattice
        valid:
          expr: >-
            n_stages <= 3 and stages_so_far <= 3
            and (n_stages > 0 ? (kinds[0] >= 1 and kinds[0] <= 4) : kinds[0] == 0)
            and (n_stages > 1 ? (kinds[1] >= 1 and kinds[1] <= 4) : kinds[1] == 0)
            and (n_stages > 2 ? (kinds[2] >= 1 and kinds[2] <= 4) : kinds[2] == 0)
        doc: |
          At most 3 stages, each of kind 1..4, the kinds past them 0, and at
          most 3 stages in the tensor's parts 1..level together (R-TEN-9).
      - id: offset
        type: u8
        doc: Position in the raw bytes of the refinement range (block, level).
      - id: size
        type: u8
        valid:
          expr: >-
            is_lattice ? _ == lattice_size
            : _ <= (_parent.n_groups * _parent.group_size * bits / 8 + 63) / 64 * 64
        doc: |
          TIERED - at most the codes of every group; LATTICE - exactly the
          padded scales and codes of the part's stages (R-TEN-9).
      - id: previous
        type: part_finder(_parent._parent, level, _parent.block, _parent.index - 1)
        doc: The previous part of this level in the block.
      - id: packed
        size: 0
        valid:
          expr: offset == (previous.end + 63) / 64 * 64
        doc: At the next multiple of 64 after the previous part (R-TEN-10).
    instances:
      is_lattice:
        value: _parent.scheme == scheme::lattice
      stages_so_far:
        value: 'prev_stages + (is_lattice ? n_stages : 0)'
        doc: LATTICE - the stages of the tensor's parts of levels 1..level.
      e8s_so_far:
        value: prev_e8s or (is_lattice and (kinds[0] == 4 or kinds[1] == 4 or kinds[2] == 4))
        doc: |
          LATTICE - a part of levels 1..level has a stage of kind 4, E8S (the
          kinds past n_stages are 0).
      scales_padded:
        value: (2 * _parent.rows * (_parent.cols / _parent.group_size) + 63) / 64 * 64
        if: is_lattice
        doc: LATTICE - one stage's scales with their padding.
      lattice_size:
        value: >-
          n_stages * scales_padded
          + (n_stages < 1 ? 0 : (_parent.n_elements * (kinds[0] == 1 ? 2 : kinds[0] == 3 ? 8 : 1) / 8 + 63) / 64 * 64)
          + (n_stages < 2 ? 0 : (_parent.n_elements * (kinds[1] == 1 ? 2 : kinds[1] == 3 ? 8 : 1) / 8 + 63) / 64 * 64)
          + (n_stages < 3 ? 0 : (_parent.n_elements * (kinds[2] == 1 ? 2 : kinds[2] == 3 ? 8 : 1) / 8 + 63) / 64 * 64)
        if: is_lattice
        doc: |
          LATTICE - the part's size, sum over its stages of
          pad64(2*rows*nb) + pad64(rows*cols*bits(kind)/8) (section 9.10),
          bits 2 for E8, 8 for INT8 and 1 for SIGN and E8S.
      end:
        value: offset + size
      padding_before:
        io: range.raw._io
        pos: previous.end
        size: offset - previous.end
        if: range.compression == compression::none
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-BLK-3
      range:
        value: _parent._parent.refinements[_parent.range.ref_start + level - 1]
        doc: The refinement record of (block, level).
      codes:
        io: range.raw._io
        pos: offset
        size: size
        type: refinement_codes(_parent.tiered_payload.n_quantized, _parent.group_size, bits)
        if: >-
          not is_lattice and range.compression == compression::none
          and _parent.range.compression == compression::none
        doc: Section 9.6; needs the base tier map for the number of quantized groups.
      stages:
        io: range.raw._io
        pos: offset
        size: size
        type: lattice_part(_parent.rows, _parent.cols, _parent.group_size, n_stages, kinds[0], kinds[1], kinds[2])
        if: is_lattice and range.compression == compression::none
        doc: |
          Section 9.10 - the stages this level adds, after the payload's and
          those of the levels before it; decoded at depth L >= level as
          section 9.12 says for that stage list (section 8.4).

  # ---- section 9: payloads -----------------------------------------------
  plain_payload:
    params:
      - id: width
        type: u1
      - id: n_elements
        type: u8
    seq:
      - id: f32_values
        type: f4
        repeat: expr
        repeat-expr: n_elements
        if: width == 4
      - id: half_bits
        type: u2
        repeat: expr
        repeat-expr: n_elements
        if: width == 2
        doc: f16 or bf16 bit patterns (section 1.8).

  tiered_payload:
    params:
      - id: n_groups
        type: u8
      - id: group_size
        type: u4
    seq:
      - id: map_fits
        size: 0
        valid:
          expr: _io.size >= map_padded
        doc: R-TIER-1
      - id: tier_map
        type: >-
          tier_map_byte(_index * 4, n_groups,
          _index == 0 ? 0 : tier_map[_index - 1].n_f16,
          _index == 0 ? 0 : tier_map[_index - 1].n_q8,
          _index == 0 ? 0 : tier_map[_index - 1].n_q4,
          _index == 0 ? 0 : tier_map[_index - 1].n_q2)
        repeat: expr
        repeat-expr: map_len
      - id: map_padding
        size: map_padded - map_len
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2
      - id: size_matches
        size: 0
        valid:
          expr: _io.size == expected_size
        doc: R-TIER-3
      - id: f16_values
        type: u2
        repeat: expr
        repeat-expr: n_f16 * group_size
        doc: G f16 values per F16 group, in group order.
      - id: f16_padding
        size: (n_f16 * 2 * group_size + 63) / 64 * 64 - n_f16 * 2 * group_size
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2
      - id: q8_codes
        size: group_size
        repeat: expr
        repeat-expr: n_q8
        doc: One code record of G 8-bit codes per Q8 group (section 9.4).
      - id: q8_codes_padding
        size: (n_q8 * group_size + 63) / 64 * 64 - n_q8 * group_size
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2
      - id: q8_params
        type: quant_params
        repeat: expr
        repeat-expr: n_q8
      - id: q8_params_padding
        size: (n_q8 * 4 + 63) / 64 * 64 - n_q8 * 4
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2
      - id: q4_codes
        size: group_size / 2
        repeat: expr
        repeat-expr: n_q4
        doc: One code record of G 4-bit codes per Q4 group (section 9.4).
      - id: q4_codes_padding
        size: (n_q4 * group_size / 2 + 63) / 64 * 64 - n_q4 * group_size / 2
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2
      - id: q4_params
        type: quant_params
        repeat: expr
        repeat-expr: n_q4
      - id: q4_params_padding
        size: (n_q4 * 4 + 63) / 64 * 64 - n_q4 * 4
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2
      - id: q2_codes
        size: group_size / 4
        repeat: expr
        repeat-expr: n_q2
        doc: One code record of G 2-bit codes per Q2 group (section 9.4).
      - id: q2_codes_padding
        size: (n_q2 * group_size / 4 + 63) / 64 * 64 - n_q2 * group_size / 4
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2
      - id: q2_params
        type: quant_params
        repeat: expr
        repeat-expr: n_q2
      - id: q2_params_padding
        size: (n_q2 * 4 + 63) / 64 * 64 - n_q2 * 4
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2
    instances:
      map_len:
        value: (n_groups + 3) / 4
      map_padded:
        value: (map_len + 63) / 64 * 64
      n_f16:
        value: tier_map.last.n_f16
      n_q8:
        value: tier_map.last.n_q8
      n_q4:
        value: tier_map.last.n_q4
      n_q2:
        value: tier_map.last.n_q2
      n_quantized:
        value: n_groups - n_f16
      expected_size:
        value: >-
          map_padded
          + (n_f16 * 2 * group_size + 63) / 64 * 64
          + (n_q8 * group_size + 63) / 64 * 64 + (n_q8 * 4 + 63) / 64 * 64
          + (n_q4 * group_size / 2 + 63) / 64 * 64 + (n_q4 * 4 + 63) / 64 * 64
          + (n_q2 * group_size / 4 + 63) / 64 * 64 + (n_q2 * 4 + 63) / 64 * 64
        doc: The sum of the padded stream lengths (section 9.3).

  lattice_size_scan:
    doc: |
      Whether `size` is the LATTICE payload size (section 9.10) of n_e8 E8,
      n_sign SIGN and n_int8 INT8 stages, 1..4 in all, for some counts: k
      runs over 0..124 as n_e8 = k / 25, n_sign = k / 5 mod 5, n_int8 = k mod 5.
      An E8S stage has a SIGN stage's size, so n_sign counts E8S stages too.
    params:
      - id: size
        type: u8
      - id: rows
        type: u8
      - id: cols
        type: u8
      - id: block
        type: u4
      - id: k
        type: u4
    seq:
      - id: next
        type: lattice_size_scan(size, rows, cols, block, k + 1)
        if: k < 124 and not here
    instances:
      n_e8:
        value: k / 25
      n_sign:
        value: k / 5 % 5
      n_int8:
        value: k % 5
      n:
        value: n_e8 + n_sign + n_int8
      here:
        value: >-
          n >= 1 and n <= 4 and size == 64 + (cols / 8 + 63) / 64 * 64
          + n * ((2 * rows * (cols / block) + 63) / 64 * 64)
          + n_e8 * ((rows * cols / 4 + 63) / 64 * 64)
          + n_sign * ((rows * cols / 8 + 63) / 64 * 64)
          + n_int8 * ((rows * cols + 63) / 64 * 64)
      some_list:
        value: here or (k < 124 and next.some_list.as<bool>)

  e8s_payload_scan:
    doc: |
      Whether tensor record i or a later one is LATTICE and either has a
      stage of kind 4 (E8S) in its payload or lies in a compressed block,
      whose payloads are opaque here (for lattice_e8s_used, R-HDR-11).
    params:
      - id: i
        type: u4
    seq:
      - id: next
        type: e8s_payload_scan(i + 1)
        if: i + 1 < _root.directory.tensor_count and not here
    instances:
      t:
        value: _root.directory.tensors[i]
      here:
        value: >-
          t.scheme == scheme::lattice
          and (t.range.compression != compression::none or t.lattice_payload.has_e8s)
      e8s_or_opaque:
        value: here or (i + 1 < _root.directory.tensor_count and next.e8s_or_opaque.as<bool>)

  lattice_payload:
    doc: Section 9.10, checked in the order of section 9.13.
    params:
      - id: rows
        type: u8
      - id: cols
        type: u8
      - id: block
        type: u4
      - id: part_stages
        type: u1
        doc: The stages of the tensor's refinement parts, all levels together.
    seq:
      - id: header_fits
        size: 0
        valid:
          expr: _io.size >= 64
        doc: R-LAT-1
      - id: n_stages
        type: u1
        valid:
          min: 1
          max: 4
        doc: R-LAT-1
      - id: kinds
        type: u1
        repeat: expr
        repeat-expr: 4
        doc: Stage kinds (enum lattice_kind); 0 past n_stages.
      - id: kinds_in_use
        size: 0
        valid:
          expr: >-
            kinds[0] >= 1 and kinds[0] <= 4
            and (n_stages < 2 or (kinds[1] >= 1 and kinds[1] <= 4))
            and (n_stages < 3 or (kinds[2] >= 1 and kinds[2] <= 4))
            and (n_stages < 4 or (kinds[3] >= 1 and kinds[3] <= 4))
        doc: R-LAT-1
      - id: kinds_unused
        size: 0
        valid:
          expr: >-
            (n_stages > 1 or kinds[1] == 0) and (n_stages > 2 or kinds[2] == 0)
            and (n_stages > 3 or kinds[3] == 0)
        doc: R-LAT-2
      - id: reserved
        size: 59
        valid:
          expr: _.max == 0
        doc: R-LAT-2
      - id: size_matches
        size: 0
        valid:
          expr: _io.size == expected_size
        doc: R-LAT-3
      - id: signs
        size: cols / 8
        doc: Bit j mod 8 of byte j / 8 set - column j's sign is -1.
      - id: signs_padding
        size: (cols / 8 + 63) / 64 * 64 - cols / 8
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-LAT-4
      - id: stages
        type: lattice_stage(rows, cols, block, kinds[_index])
        repeat: expr
        repeat-expr: n_stages
      - id: stage_limit
        size: 0
        valid:
          expr: n_stages + part_stages <= 4
        doc: |
          At most 4 stages in the payload and the refinement parts together
          (R-LAT-6).
      - id: e8s_flagged
        size: 0
        valid:
          expr: (_root.header.required_features & 8) != 0 or not has_e8s
        doc: |
          A stage of kind 4 (E8S) needs required feature bit 3, LATTICE_E8S
          (R-HDR-11, checked when the payload is viewed, section 3.2).
    instances:
      has_e8s:
        value: kinds[0] == 4 or kinds[1] == 4 or kinds[2] == 4 or kinds[3] == 4
        doc: A stage has kind 4, E8S (the kinds past n_stages are 0, R-LAT-2).
      scales_padded:
        value: (2 * rows * (cols / block) + 63) / 64 * 64
      expected_size:
        value: >-
          64 + (cols / 8 + 63) / 64 * 64
          + n_stages * scales_padded
          + (kinds[0] == 3 ? (rows * cols + 63) / 64 * 64 : (rows * cols * (kinds[0] == 1 ? 2 : 1) / 8 + 63) / 64 * 64)
          + (n_stages < 2 ? 0 : kinds[1] == 3 ? (rows * cols + 63) / 64 * 64
          : (rows * cols * (kinds[1] == 1 ? 2 : 1) / 8 + 63) / 64 * 64)
          + (n_stages < 3 ? 0 : kinds[2] == 3 ? (rows * cols + 63) / 64 * 64
          : (rows * cols * (kinds[2] == 1 ? 2 : 1) / 8 + 63) / 64 * 64)
          + (n_stages < 4 ? 0 : kinds[3] == 3 ? (rows * cols + 63) / 64 * 64
          : (rows * cols * (kinds[3] == 1 ? 2 : 1) / 8 + 63) / 64 * 64)
        doc: |
          The size of section 9.10 for these stages: code bits 2 for E8 (1),
          8 for INT8 (3) and 1 for SIGN (2) and E8S (4).

  lattice_part:
    doc: |
      The bytes of a LATTICE tensor's refinement part (section 9.10): for
      each of its stages, scales then codes, each padded to 64 bytes, as in a
      payload; no header and no signs (the payload's are used). Its size is
      checked at open (R-TEN-9); its padding and scales when it is read
      (R-LAT-4, R-LAT-5).
    params:
      - id: rows
        type: u8
      - id: cols
        type: u8
      - id: block
        type: u4
      - id: n_stages
        type: u1
      - id: kind0
        type: u1
      - id: kind1
        type: u1
      - id: kind2
        type: u1
    seq:
      - id: stages
        type: 'lattice_stage(rows, cols, block, _index == 0 ? kind0 : _index == 1 ? kind1 : kind2)'
        repeat: expr
        repeat-expr: n_stages

  lattice_stage:
    doc: One stage's scales and codes, in a payload or a refinement part (section 9.10).
    params:
      - id: rows
        type: u8
      - id: cols
        type: u8
      - id: block
        type: u4
      - id: kind
        type: u1
    seq:
      - id: scales
        type: u2
        repeat: expr
        repeat-expr: rows * (cols / block)
        valid:
          expr: (_ & 0x7c00) != 0x7c00
        doc: f16 scale of (row, block), row-major; finite (R-LAT-5).
      - id: scales_padding
        size: (2 * rows * (cols / block) + 63) / 64 * 64 - 2 * rows * (cols / block)
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-LAT-4
      - id: codes
        size: code_bytes
        doc: |
          Row r at r * cols * bits / 8; any value is valid (section 9.11).
          E8: a u2 per 8 columns; SIGN: bit j mod 8 of byte j / 8; INT8: a
          signed byte per column; E8S: byte j / 8 for the 8 columns of j.
      - id: codes_padding
        size: (code_bytes + 63) / 64 * 64 - code_bytes
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-LAT-4
    instances:
      bits:
        value: 'kind == 1 ? 2 : kind == 3 ? 8 : 1'
        doc: E8 2, SIGN 1, INT8 8, E8S 1 (section 9.10).
      code_bytes:
        value: rows * cols * bits / 8

  tier_map_byte:
    doc: |
      Tiers of groups first_group .. first_group+3, two bits each from the
      least significant bits up, and the running count of each tier.
    params:
      - id: first_group
        type: u8
      - id: n_groups
        type: u8
      - id: prev_f16
        type: u8
      - id: prev_q8
        type: u8
      - id: prev_q4
        type: u8
      - id: prev_q2
        type: u8
    seq:
      - id: tiers
        type: b2
        enum: tier
        repeat: expr
        repeat-expr: 4
        valid:
          expr: first_group + _index < n_groups or _ == tier::f16
        doc: Unused bits of the last byte are zero (R-TIER-2).
    instances:
      used:
        value: 'n_groups - first_group < 4 ? n_groups - first_group : 4'
      n_f16:
        value: >-
          prev_f16 + (tiers[0] == tier::f16 ? 1 : 0) + (tiers[1] == tier::f16 ? 1 : 0)
          + (tiers[2] == tier::f16 ? 1 : 0) + (tiers[3] == tier::f16 ? 1 : 0) - (4 - used)
      n_q8:
        value: >-
          prev_q8 + (tiers[0] == tier::q8 ? 1 : 0) + (tiers[1] == tier::q8 ? 1 : 0)
          + (tiers[2] == tier::q8 ? 1 : 0) + (tiers[3] == tier::q8 ? 1 : 0)
      n_q4:
        value: >-
          prev_q4 + (tiers[0] == tier::q4 ? 1 : 0) + (tiers[1] == tier::q4 ? 1 : 0)
          + (tiers[2] == tier::q4 ? 1 : 0) + (tiers[3] == tier::q4 ? 1 : 0)
      n_q2:
        value: >-
          prev_q2 + (tiers[0] == tier::q2 ? 1 : 0) + (tiers[1] == tier::q2 ? 1 : 0)
          + (tiers[2] == tier::q2 ? 1 : 0) + (tiers[3] == tier::q2 ? 1 : 0)

  quant_params:
    doc: A quantized group's step d and offset m, f16 bit patterns (section 9.3).
    seq:
      - id: d
        type: u2
        valid:
          expr: (_ & 0x7c00) != 0x7c00
        doc: Finite (R-TIER-4).
      - id: m
        type: u2
        valid:
          expr: (_ & 0x7c00) != 0x7c00
        doc: Finite (R-TIER-4).

  refinement_codes:
    params:
      - id: n_quantized
        type: u8
      - id: group_size
        type: u4
      - id: bits
        type: u1
    seq:
      - id: size_matches
        size: 0
        valid:
          expr: _io.size == (n_quantized * group_size * bits / 8 + 63) / 64 * 64
        doc: R-TIER-5
      - id: records
        size: group_size * bits / 8
        repeat: expr
        repeat-expr: n_quantized
        doc: One code record per quantized group, in quantized rank order.
      - id: padding
        size-eos: true
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-TIER-2

  # ---- section 10: importance --------------------------------------------
  importance:
    seq:
      - id: method
        type: u4
        enum: importance_method
        valid:
          any-of: [importance_method::magnitude, importance_method::calibrated]
        doc: R-IMP-1 (a section shorter than 20 bytes fails in this header).
      - id: entry_count
        type: u4
        valid:
          expr: _ <= _root.directory.tensor_count
        doc: R-IMP-2
      - id: target_bpw
        type: f8
        valid:
          expr: _ >= 0 and _ <= 32
        doc: Finite, 0..32 (R-IMP-1).
      - id: provenance_len
        type: u4
        valid:
          max: 0x100000
        doc: R-IMP-2
      - id: provenance
        size: provenance_len
        type: str
        encoding: UTF-8
        doc: R-IMP-2 (strict UTF-8 is not checked here).
      - id: entries
        type: 'importance_entry(_index == 0 ? -1 : entries[_index - 1].tensor)'
        repeat: expr
        repeat-expr: entry_count
        doc: Truncated entries fail here (R-IMP-3).
      - id: trailing
        size-eos: true
        valid:
          expr: _.length == 0
        doc: The last entry ends the section (R-IMP-7).

  importance_entry:
    params:
      - id: prev_tensor
        type: s8
    seq:
      - id: tensor
        type: u4
        valid:
          expr: >-
            _ > prev_tensor and _ < _root.directory.tensor_count
            and (_root.directory.tensors[_].scheme == scheme::tiered
            or _root.directory.tensors[_].scheme == scheme::lattice)
        doc: A TIERED or LATTICE tensor, in increasing order (R-IMP-4).
      - id: reserved
        type: u4
        valid: 0
        doc: R-IMP-3
      - id: n_group_stats
        type: u8
        valid:
          expr: _ == 0 or _ == _root.directory.tensors[tensor].n_groups
        doc: R-IMP-5
      - id: n_col_stats
        type: u8
        valid:
          expr: _ == 0 or _ == _root.directory.tensors[tensor].cols
        doc: R-IMP-5
      - id: group_stats
        type: f4
        repeat: expr
        repeat-expr: n_group_stats
        valid:
          expr: _ >= 0 and _ - _ == 0
        doc: Finite and not negative (R-IMP-6).
      - id: col_stats
        type: f4
        repeat: expr
        repeat-expr: n_col_stats
        valid:
          expr: _ >= 0 and _ - _ == 0
        doc: Finite and not negative (R-IMP-6).

  # ---- section 11: router ------------------------------------------------
  router:
    seq:
      - id: feature
        type: u4
        valid: 1
        doc: Mean of the prompt's token embeddings (R-RTR-2).
      - id: input_dim
        type: u4
        valid:
          expr: _ == _root.metadata.hidden_size
        doc: model.hidden_size (R-RTR-2).
      - id: hidden_dim
        type: u4
        valid:
          max: 4096
        doc: R-RTR-2
      - id: activation
        type: u4
        enum: activation
        valid:
          any-of: [activation::identity, activation::relu, activation::tanh]
        doc: R-RTR-2
      - id: block_count
        type: u4
        valid:
          expr: _ == _root.directory.block_count
        doc: R-RTR-2
      - id: temperature
        type: f4
        valid:
          expr: _ > 0 and _ - _ == 0
        doc: Finite, above 0 (R-RTR-2).
      - id: reserved
        type: u8
        valid: 0
        doc: R-RTR-1 (a section shorter than 32 bytes fails in this header).
      - id: size_matches
        size: 0
        valid:
          expr: _io.size == 32 + mask_area + 4 * n_params
        doc: R-RTR-4
      - id: choice_masks
        type: choice_mask(_index, block_count)
        repeat: expr
        repeat-expr: block_count
      - id: mask_padding
        size: mask_area - block_count
        valid:
          expr: _.length == 0 or _.max == 0
        doc: R-RTR-5
      - id: in_mean
        type: f4
        repeat: expr
        repeat-expr: input_dim
        valid:
          expr: _ - _ == 0
        doc: R-RTR-6
      - id: in_scale
        type: f4
        repeat: expr
        repeat-expr: input_dim
        valid:
          expr: _ - _ == 0
        doc: R-RTR-6
      - id: w1
        type: f4
        repeat: expr
        repeat-expr: hidden_dim * input_dim
        valid:
          expr: _ - _ == 0
        doc: H x D, row-major (R-RTR-6).
      - id: b1
        type: f4
        repeat: expr
        repeat-expr: hidden_dim
        valid:
          expr: _ - _ == 0
        doc: R-RTR-6
      - id: w2
        type: f4
        repeat: expr
        repeat-expr: '3 * block_count * (hidden_dim > 0 ? hidden_dim : input_dim)'
        valid:
          expr: _ - _ == 0
        doc: O x H, or O x D without a hidden layer (R-RTR-6).
      - id: b2
        type: f4
        repeat: expr
        repeat-expr: 3 * block_count
        valid:
          expr: _ - _ == 0
        doc: R-RTR-6
    instances:
      mask_area:
        value: (block_count + 3) / 4 * 4
      n_params:
        value: >-
          2 * input_dim + (hidden_dim > 0
          ? hidden_dim * input_dim + hidden_dim + 3 * block_count * hidden_dim + 3 * block_count
          : 3 * block_count * input_dim + 3 * block_count)
        doc: P of section 11.1.

  choice_mask:
    params:
      - id: index
        type: u4
      - id: n_blocks
        type: u4
    seq:
      - id: mask
        type: u1
        valid:
          expr: >-
            _ != 0 and _ <= 7
            and (not is_edge or (_ & 3) == 2)
            and ((_ & 4) == 0 or _root.directory.blocks[index].n_levels > 0)
        doc: |
          Bits 0 SKIP, 1 BASE, 2 FULL; not empty; FULL only with refinement
          levels; an edge block runs at BASE and is never skipped (R-RTR-3).
    instances:
      is_edge:
        value: index == 0 or index == n_blocks - 1
      skip:
        value: (mask & 1) != 0
      base:
        value: (mask & 2) != 0
      full:
        value: (mask & 4) != 0

enums:
  section_kind:
    1: metadata
    2: tokenizer
    3: directory
    4: importance
    5: router
  meta_type:
    1: u64
    2: i64
    3: f64
    4: bool
    5: string
  tokenizer_kind:
    1: hf_json
    2: gpt2_bpe
    3: sentencepiece
  block_kind:
    1: embeddings
    2: layers
    3: output
  compression:
    0: none
    1: zstd
  scheme:
    1: f32
    2: f16
    3: bf16
    16: tiered
    17: lattice
  lattice_kind:
    1: e8
    2: sign
    3: int8
    4: e8s
  tier:
    0: f16
    1: q8
    2: q4
    3: q2
  importance_method:
    1: magnitude
    2: calibrated
  activation:
    0: identity
    1: relu
    2: tanh
