#!/usr/bin/env node
// Checks spec/nsq.ksy against the conformance set: compiles it to JavaScript
// with the Kaitai Struct compiler, parses every file of
// fixtures/conformance/MANIFEST, compares what it reads from each valid file
// with nsq-inspect's JSON, and checks that each invalid file is rejected for
// the rule the manifest names, or is listed below as out of Kaitai's reach.
//
//   node tests/kaitai/check.js [-v] OUTDIR [NSQ_INSPECT]
//
// OUTDIR receives the generated parser. -v also prints, for each file that
// passes, how it was read or rejected. With NSQ_INSPECT, the expected JSON
// is that program's `--json --blocks --tensors` output; without it, the
// stored fixtures/conformance/*.json (the same text, see tests/run.sh).
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const YAML = require('yaml');
const compiler = require('kaitai-struct-compiler');
const KaitaiStream = require('kaitai-struct/KaitaiStream');
const { layoutProblem, uniqueNamesProblem } = require('./rules');
const { compareInspect } = require('./compare');

const ROOT = path.resolve(__dirname, '../..');
const CONF = path.join(ROOT, 'fixtures/conformance');
const KSY = path.join(ROOT, 'spec/nsq.ksy');

// Rules nsq.ksy cannot state, each with the reason. A file invalid under one
// of these must still parse (or fail under the rule given as `also`, when its
// corruption breaks a second, structural rule too).
const OUT_OF_REACH = {
  'R-HDR-10': { why: 'XXH3-64 checksum: Kaitai has no hash functions' },
  'R-SEC-7': { why: 'XXH3-64 checksum: Kaitai has no hash functions',
    also: 'R-META-4' }, // the flipped bit turns general.* into genesal.*, out of key order
  'R-BLK-1': { why: 'XXH3-64 checksum: Kaitai has no hash functions' },
  'R-BLK-2': { why: 'Zstandard frame: Kaitai cannot decompress it (compressed ranges are opaque)' },
  'R-META-7': { why: 'strict UTF-8: Kaitai decodes strings leniently and cannot reject malformed UTF-8' },
  'R-META-11': { why: 'required keys and their types: a table of 26 keys, one lookup each' },
  'R-META-12': { why: 'required values: a range for each required U64 key and a cross-key relation' },
};

// Rules this script checks itself on the parsed tree: they need sorting or a
// set, which Kaitai expressions do not have.
const CHECKED_HERE = {
  'R-LAY-1': layoutProblem, 'R-LAY-2': layoutProblem, 'R-LAY-3': layoutProblem,
  'R-TEN-13': uniqueNamesProblem,
};

// Rules about data that must lie within its section or file: a violation
// shows as reading past the end (EOFError) rather than as a `valid` key.
const TRUNCATION = new Set(['R-HDR-5', 'R-META-1', 'R-META-2', 'R-META-5', 'R-TOK-1', 'R-TOK-3',
  'R-DIR-1', 'R-DIR-11', 'R-IMP-1', 'R-IMP-3', 'R-RTR-1']);

// The runtime drops the path of the failing `valid` key that generated code
// passes as the last argument; keep it, to find the rule in the .ksy.
function keepSourcePaths() {
  for (const name of Object.keys(KaitaiStream)) {
    if (!/^Validation\w+Error$/.test(name)) continue;
    const Base = KaitaiStream[name];
    KaitaiStream[name] = class extends Base {
      constructor(...args) { super(...args); this.srcPath = args[args.length - 1]; }
    };
  }
}

// The parser generated from the .ksy, in debug mode (which records where each
// field lies, for exact 64-bit reads) or as ordinary users generate it.
async function buildParser(ksy, outDir, debug) {
  const files = await compiler.compile('javascript', ksy, null, debug);
  const dir = path.join(outDir, debug ? 'debug' : 'plain');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'Nsq.js');
  fs.writeFileSync(file, files['Nsq.js']);
  const exports = {};
  const load = new Function('exports', 'require', fs.readFileSync(file, 'utf8'));
  load(exports, (name) => (name === 'kaitai-struct/KaitaiStream' ? KaitaiStream : require(name)));
  return exports.Nsq;
}

// Reads every attribute and instance, so that every `valid` key is applied.
function walk(obj, seen) {
  if (obj === null || typeof obj !== 'object' || ArrayBuffer.isView(obj) || seen.has(obj)) return;
  seen.add(obj);
  if (Array.isArray(obj)) { for (const v of obj) walk(v, seen); return; }
  for (const key of Object.keys(obj)) if (!key.startsWith('_')) walk(obj[key], seen);
  const proto = Object.getPrototypeOf(obj);
  for (const key of Object.getOwnPropertyNames(proto)) {
    const d = Object.getOwnPropertyDescriptor(proto, key);
    if (d.get && !key.startsWith('_')) walk(obj[key], seen);
  }
}

// Parses a whole file with both parsers { debug, plain }; the tree returned is
// the debug one.
function parseFile(parsers, file) {
  const buf = fs.readFileSync(file);
  const bytes = new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  walk(new parsers.plain(new KaitaiStream(bytes.buffer)), new Set());
  const nsq = new parsers.debug(new KaitaiStream(bytes.buffer));
  nsq._read();
  walk(nsq, new Set());
  return { nsq, bytes };
}

// The rule ids named in the doc of the .ksy node at a validation error's path.
function rulesAt(ksy, srcPath) {
  let node = ksy;
  for (const part of srcPath.split('/').filter(Boolean)) node = node && node[part];
  return ((node && node.doc) || '').match(/R-[A-Z]+-\d+/g) || [];
}

// What rejected a file: { rules: [...] } from a valid key, { eof: true }, or
// null when it parsed; anything else is a defect of the .ksy and is thrown.
function rejection(ksy, err) {
  const text = err.message.length > 100 ? `${err.message.slice(0, 100)}...` : err.message;
  if (err instanceof KaitaiStream.EOFError) return { eof: true, text };
  if (err.srcPath) return { rules: rulesAt(ksy, err.srcPath), text: `${err.srcPath}: ${text}` };
  throw err;
}

function tryParse(parsers, ksy, file) {
  try {
    return { parsed: parseFile(parsers, file) };
  } catch (err) {
    return { rejected: rejection(ksy, err) };
  }
}

// The checks of CHECKED_HERE, which a valid file must pass too.
function hereProblems(parsed) {
  return [...new Set(Object.values(CHECKED_HERE))].map((check) => check(parsed)).filter(Boolean);
}

function expectedJson(inspect, file) {
  if (!inspect) return fs.readFileSync(file.replace(/\.nsq$/, '.json'), 'utf8');
  return execFileSync(inspect, ['--json', '--blocks', '--tensors', file], { encoding: 'utf8' });
}

// JSON.parse with integers beyond 2^53 kept exact, as { bigint: 'digits' }.
function parseExactJson(text) {
  const token = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
  return JSON.parse(text.replace(token, (t) => (/^-?\d+$/.test(t) && !Number.isSafeInteger(Number(t))
    ? `{"bigint":"${t}"}` : t)));
}

function checkValid(parsers, ksy, file, inspect) {
  const r = tryParse(parsers, ksy, file);
  if (r.rejected) return [`rejected: ${describeRejection(r.rejected)}`];
  const problems = hereProblems(r.parsed).map((p) => `${p.rule}: ${p.text}`);
  try {
    return problems.concat(compareInspect(parsers.debug, r.parsed, parseExactJson(expectedJson(inspect, file))));
  } catch (err) { // a payload of a compressed block, parsed after decompression
    return problems.concat([`rejected: ${describeRejection(rejection(ksy, err))}`]);
  }
}

function describeRejection(rej) {
  if (!rej) return 'parsed without error';
  return rej.eof ? `EOF, ${rej.text}` : `${rej.rules.join(', ')} at ${rej.text}`;
}

// Problems with how an invalid file fares, and a note of how it was rejected.
function checkInvalid(parsers, ksy, file, rule) {
  const r = tryParse(parsers, ksy, file);
  const rej = r.rejected || null;
  const how = describeRejection(rej);
  if (OUT_OF_REACH[rule]) {
    const also = OUT_OF_REACH[rule].also;
    if (!rej || (also && rej.rules && rej.rules.includes(also))) return { problems: [], how };
    return { problems: [`${rule} is out of reach (${OUT_OF_REACH[rule].why}) but: ${how}`], how };
  }
  if (CHECKED_HERE[rule]) {
    if (rej) return { problems: [`${rule} is checked here, but the parse failed: ${how}`], how };
    const p = CHECKED_HERE[rule](r.parsed);
    const got = p ? `${p.rule}: ${p.text}` : 'none';
    return { problems: p && p.rule === rule ? [] : [`want ${rule} from the check here, got ${got}`], how: got };
  }
  const named = rej && rej.rules && rej.rules.includes(rule);
  const truncated = rej && rej.eof && TRUNCATION.has(rule);
  return { problems: named || truncated ? [] : [`want a rejection under ${rule}, got ${how}`], how };
}

function manifest() {
  return fs.readFileSync(path.join(CONF, 'MANIFEST'), 'utf8').split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => { const [file, status, rule] = l.trim().split(/\s+/); return { file, status, rule }; });
}

async function main() {
  const args = process.argv.slice(2);
  const verbose = args[0] === '-v';
  const [outDir, inspect] = verbose ? args.slice(1) : args;
  if (!outDir) { console.error('usage: check.js [-v] OUTDIR [NSQ_INSPECT]'); process.exit(2); }
  keepSourcePaths();
  const ksy = YAML.parse(fs.readFileSync(KSY, 'utf8'));
  const parsers = { debug: await buildParser(ksy, outDir, true), plain: await buildParser(ksy, outDir, false) };
  let pass = 0, fail = 0;
  for (const { file, status, rule } of manifest()) {
    const full = path.join(CONF, file);
    const { problems, how } = status === 'NSQ_OK'
      ? { problems: checkValid(parsers, ksy, full, inspect), how: 'matches nsq-inspect' }
      : checkInvalid(parsers, ksy, full, rule);
    if (problems.length === 0) {
      pass++;
      if (verbose) console.log(`ok ${file}: ${how}`);
      continue;
    }
    fail++;
    console.log(`not ok ${file}`);
    for (const p of problems.slice(0, 10)) console.log(`    ${p}`);
  }
  console.log(`${pass} of ${pass + fail} conformance files read as expected`);
  process.exit(fail === 0 ? 0 : 1);
}

// A compilation error of the .ksy is a Scala exception, whose text is in jl_Throwable__f_s.
main().catch((err) => { console.error(err.jl_Throwable__f_s || err.stack || String(err)); process.exit(1); });
