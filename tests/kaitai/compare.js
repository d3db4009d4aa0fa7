// Rebuilds nsq-inspect's JSON (tools/nsq-inspect/JSON.md) from a tree parsed
// with spec/nsq.ksy and lists where it differs from the expected JSON.
'use strict';
const { execFileSync } = require('child_process');
const KaitaiStream = require('kaitai-struct/KaitaiStream');

// Kaitai's JavaScript runtime reads u8/s8 as doubles; the debug positions give
// the exact 64-bit value of a field.
function exact64(bytes, obj, field, signed) {
  const d = obj._debug[field];
  const view = new DataView(bytes.buffer, d.ioOffset + d.start, 8);
  return signed ? view.getBigInt64(0, true) : view.getBigUint64(0, true);
}

const name = (e, v) => e[v].toLowerCase();
const hex16 = (v) => v.toString(16).padStart(16, '0');
// x rounded to 6 decimals as C's printf("%f") does: an exact tie goes to the
// even digit, where toFixed would round it up. toFixed(100) is exact for every
// x >= 2^-48 (a multiple of 2^-100, so at most 100 fractional digits).
function fixed6(x) {
  const [whole, frac] = x.toFixed(100).split('.');
  const tie = /^50*$/.test(frac.slice(6)) && Number(frac[5]) % 2 === 0;
  return Number(tie ? `${whole}.${frac.slice(0, 6)}` : x.toFixed(6));
}
const bpw = (bytes, elements) => (elements ? fixed6((bytes * 8) / elements) : 0);

function featureNames(bits, names) {
  const out = [];
  for (let b = 0n; b < 64n; b++) if ((bits >> b) & 1n) out.push(names[b] || `bit${b}`);
  return out;
}

function metaValue(ctx, v, type) {
  switch (type) {
    case 'u64': return exact64(ctx.bytes, v, 'u64Value');
    case 'i64': return exact64(ctx.bytes, v, 'i64Value', true);
    case 'f64': return v.f64Value;
    case 'bool': return v.boolValue === 1;
    default: return v.stringValue;
  }
}

function metadataView(ctx) {
  return ctx.nsq.metadata.entries.map((e) => {
    const type = name(ctx.Nsq.MetaType, e.elementType);
    const values = e.values.map((v) => metaValue(ctx, v, type));
    return { key: e.key.text, type, array: e.isArray, value: e.isArray ? values : values[0] };
  });
}

function importanceView({ Nsq, nsq }) {
  const imp = nsq.importance;
  if (!imp) return null;
  return { method: name(Nsq.ImportanceMethod, imp.method), target_bpw: imp.targetBpw,
    provenance: imp.provenance, entries: imp.entryCount };
}

function routerView({ Nsq, nsq }) {
  const r = nsq.router;
  if (!r) return null;
  const choice = (m) => ['skip', 'base', 'full'].filter((_, i) => m.mask & (1 << i)).join('|');
  return { feature: r.feature, input_dim: r.inputDim, hidden_dim: r.hiddenDim,
    activation: name(Nsq.Activation, r.activation), temperature: r.temperature,
    choices: r.choiceMasks.map(choice) };
}

// The raw bytes of a compressed range, decoded by the zstd program.
function decompressed(bytes, range) {
  const frame = bytes.subarray(range.offset, range.offset + range.storedSize);
  const raw = execFileSync('zstd', ['-d', '-c', '-q'], { input: frame, maxBuffer: 1 << 30 });
  return new Uint8Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
}

// The TIERED payload as parsed in place, or, in a compressed block, parsed
// with the same .ksy type from the decompressed bytes.
function tieredPayload(ctx, t) {
  if (t.tieredPayload) return t.tieredPayload;
  const raw = ctx.rawOf(t.block);
  const io = new KaitaiStream(raw.slice(t.offset, t.offset + t.size).buffer);
  const p = new ctx.Nsq.TieredPayload(io, null, ctx.nsq, t.nGroups, t.groupSize);
  p._read();
  return p;
}

// The LATTICE payload, in place or from the decompressed block, like tieredPayload.
function latticePayload(ctx, t) {
  if (t.latticePayload) return t.latticePayload;
  const raw = ctx.rawOf(t.block);
  const io = new KaitaiStream(raw.slice(t.offset, t.offset + t.size).buffer);
  const p = new ctx.Nsq.LatticePayload(io, null, ctx.nsq, t.nElements / t.cols, t.cols, t.groupSize, t.partStages);
  p._read();
  return p;
}

function tensorView(ctx, t) {
  const out = { name: t.name.text, shape: t.dims, scheme: name(ctx.Nsq.Scheme, t.scheme), block: t.block,
    offset: t.offset, size: t.size, bpw: bpw(t.size, t.nElements) };
  if (t.scheme === ctx.Nsq.Scheme.LATTICE) {
    const p = latticePayload(ctx, t);
    const stages = p.kinds.slice(0, p.nStages).map((k) => name(ctx.Nsq.LatticeKind, k));
    const view = { ...out, group_size: t.groupSize, stages };
    if (t.nRefine === 0) return view;
    // The stages each level adds (0..3; kinds past nStages are 0).
    view.refinements = t.refine.map((r) => ({ level: r.level,
      stages: r.kinds.slice(0, r.nStages).map((k) => name(ctx.Nsq.LatticeKind, k)), size: r.size }));
    return view;
  }
  if (t.scheme !== ctx.Nsq.Scheme.TIERED) return out;
  const p = tieredPayload(ctx, t);
  out.group_size = t.groupSize;
  out.tiers = { f16: p.nF16, q8: p.nQ8, q4: p.nQ4, q2: p.nQ2 };
  out.refinements = t.refine.map((r) => ({ level: r.level, bits: r.bits, size: r.size }));
  return out;
}

function rangeView(ctx, r) {
  return { compression: name(ctx.Nsq.Compression, r.compression), offset: r.offset,
    stored_size: r.storedSize, raw_size: r.rawSize, checksum: hex16(exact64(ctx.bytes, r, 'checksum')) };
}

function blockView(ctx, b, i) {
  const dir = ctx.nsq.directory;
  const tensors = dir.tensors.filter((t) => t.block === i);
  const elements = tensors.reduce((n, t) => n + t.nElements, 0);
  const refs = dir.refinements.filter((r) => r.block === i).map((r) => ({ level: r.level, ...rangeView(ctx, r) }));
  const full = refs.reduce((n, r) => n + r.stored_size, b.storedSize);
  const head = { index: i, kind: name(ctx.Nsq.BlockKind, b.kind), first_layer: b.firstLayer, n_layers: b.nLayers };
  return { ...head, ...rangeView(ctx, b), tensor_count: tensors.length,
    bpw: bpw(b.storedSize, elements), bpw_full: bpw(full, elements), refinements: refs };
}

function inspectView(ctx) {
  const { Nsq, nsq, bytes } = ctx;
  const h = nsq.header;
  const dir = nsq.directory;
  const nElements = dir.tensors.reduce((n, t) => n + t.nElements, 0);
  return {
    format_version: `${h.versionMajor}.${h.versionMinor}`,
    file_size: h.fileSize,
    required_features: featureNames(exact64(bytes, h, 'requiredFeatures'), ['zstd', 'lattice', 'lattice_levels', 'lattice_e8s']),
    optional_features: featureNames(exact64(bytes, h, 'optionalFeatures'), ['refinements', 'importance', 'router']),
    metadata: metadataView(ctx),
    tokenizer: { kind: name(Nsq.TokenizerKind, nsq.tokenizer.kind),
      files: nsq.tokenizer.files.map((f) => ({ name: f.name.text, size: f.size })) },
    block_count: dir.blockCount,
    refinement_count: dir.refinementCount,
    tensor_count: dir.tensorCount,
    n_elements: nElements,
    bpw: bpw(h.fileSize, nElements),
    importance: importanceView(ctx),
    router: routerView(ctx),
    blocks: dir.blocks.map((b, i) => blockView(ctx, b, i)),
    tensors: dir.tensors.map((t) => tensorView(ctx, t)),
  };
}

function same(actual, expected) {
  if (typeof actual === 'bigint') {
    return expected !== null && typeof expected === 'object' ? actual.toString() === expected.bigint
      : Number.isSafeInteger(expected) && actual === BigInt(expected);
  }
  return actual === expected;
}

// Paths where the two JSON-like values differ; keys of either side count.
function differences(actual, expected, where, out) {
  const isObj = (v) => v !== null && typeof v === 'object';
  if (isObj(actual) && isObj(expected) && Array.isArray(actual) === Array.isArray(expected)) {
    const keys = new Set([...Object.keys(actual), ...Object.keys(expected)]);
    for (const k of keys) differences(actual[k], expected[k], `${where}/${k}`, out);
  } else if (!same(actual, expected)) {
    out.push(`${where}: .ksy reads ${String(actual)}, nsq-inspect says ${JSON.stringify(expected)}`);
  }
  return out;
}

// The differences between what the .ksy reads from a parsed file
// ({ nsq, bytes }, Nsq being the generated class) and nsq-inspect's JSON.
function compareInspect(Nsq, { nsq, bytes }, expected) {
  const raws = new Map();
  const rawOf = (i) => {
    if (!raws.has(i)) raws.set(i, decompressed(bytes, nsq.directory.blocks[i]));
    return raws.get(i);
  };
  return differences(inspectView({ Nsq, nsq, bytes, rawOf }), expected, '', []);
}

module.exports = { compareInspect };
