// The rules of spec/nsq-format.md that Kaitai expressions cannot state
// (they need sorting or a set), checked on a tree parsed with spec/nsq.ksy.
// Each returns null or { rule, text } for the first violation.
'use strict';

const alignUp = (v, a) => Math.ceil(v / a) * a;

// Every range of section 2.1 as { name, start, length, align }.
function ranges(nsq) {
  const h = nsq.header;
  const out = [{ name: 'header', start: 0, length: 128, align: 1 },
    { name: 'section table', start: h.sectionTableOffset, length: 32 * h.sectionCount, align: 8 }];
  nsq.sectionTable.forEach((e, i) => out.push({ name: `section ${i}`, start: e.offset, length: e.size, align: 8 }));
  const dir = nsq.directory;
  dir.blocks.forEach((b, i) => out.push({ name: `block ${i}`, start: b.offset, length: b.storedSize, align: 4096 }));
  dir.refinements.forEach((r) => out.push({
    name: `block ${r.block} level ${r.level}`, start: r.offset, length: r.storedSize, align: 4096,
  }));
  return out.sort((a, b) => a.start - b.start);
}

// The coverage rule of section 2.2 (R-LAY-1..3).
function layoutProblem({ nsq, bytes }) {
  let pos = 0;
  for (const r of ranges(nsq)) {
    if (r.start !== alignUp(pos, r.align)) {
      return { rule: 'R-LAY-1', text: `${r.name} starts at ${r.start}, want ${alignUp(pos, r.align)}` };
    }
    if (bytes.subarray(pos, r.start).some((b) => b !== 0)) {
      return { rule: 'R-LAY-2', text: `padding before ${r.name} is not zero` };
    }
    pos = r.start + r.length;
  }
  if (pos !== bytes.length) return { rule: 'R-LAY-3', text: `ranges end at ${pos}, the file at ${bytes.length}` };
  return null;
}

// R-TEN-13: no two tensors share a name.
function uniqueNamesProblem({ nsq }) {
  const seen = new Set();
  for (const t of nsq.directory.tensors) {
    if (seen.has(t.name.text)) return { rule: 'R-TEN-13', text: `tensor ${t.name.text} appears twice` };
    seen.add(t.name.text);
  }
  return null;
}

module.exports = { layoutProblem, uniqueNamesProblem };
