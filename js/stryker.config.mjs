// Mutation testing of the JavaScript side (make mutation, scripts/mutation; docs/mutation.md).
// Stryker runs from the repository's root, not js/: the tests read the shared vectors (spec/)
// and spawn the fixtures (tests/fixtures), so the sandbox it copies must hold them too.
//
// Four targets, one run each (BOTHWAYS_MUTATE): "codec" mutates wire.js and rpc.js against their
// unit tests and the shared vectors; "wire" and "rpc" mutate one of the two against the same tests
// (a quicker run when only one changed); "stdio" mutates the child-process transport against its
// tests, without the stress cases (BOTHWAYS_QUICK=1 skips them; scripts/mutation sets it).
// The tap runner runs each test file in a node process of its own, with "perTest" coverage per
// file: a mutant runs only the files that reach it, and one that none reaches is not run.
// The codec's unit tests, the shared vectors, the seeded property tests and the fuzz corpora
// (fuzz.test.js replays them, then a few hundred seeded runs; Python's test_corpus and
// tests/fuzz/test_rpc.py are the twins).
const CODEC_TESTS = [
  "js/test/wire.test.js",
  "js/test/rpc.test.js",
  "js/test/vectors.test.js",
  "js/test/property.test.js",
  "js/test/fuzz.test.js",
];
const TARGETS = {
  codec: { mutate: ["js/src/wire.js", "js/src/rpc.js"], testFiles: CODEC_TESTS },
  wire: { mutate: ["js/src/wire.js"], testFiles: CODEC_TESTS },
  rpc: { mutate: ["js/src/rpc.js"], testFiles: CODEC_TESTS },
  stdio: {
    mutate: ["js/src/transports/stdio.js"],
    testFiles: ["js/test/stdio.test.js"],
  },
};
const target = process.env.BOTHWAYS_MUTATE ?? "codec";
if (!(target in TARGETS)) throw new Error(`BOTHWAYS_MUTATE: ${target} is not one of ${Object.keys(TARGETS)}`);

export default {
  packageManager: "npm",
  testRunner: "tap",
  tap: { testFiles: TARGETS[target].testFiles, forceBail: true },
  coverageAnalysis: "perTest",
  mutate: TARGETS[target].mutate,
  // Copy into the sandbox only what the tests need (node_modules are linked, not copied).
  ignorePatterns: [
    "/*",
    "!/js",
    "/js/*",
    "!/js/src",
    "!/js/test",
    "!/js/bin",
    "!/js/package.json",
    "!/spec",
    "!/tests",
    "/tests/*",
    "!/tests/fixtures",
    "!/tests/fuzz",
    "/tests/fuzz/*",
    "!/tests/fuzz/corpus",
  ],
  concurrency: Number(process.env.BOTHWAYS_MUTATE_CONCURRENCY ?? 2),
  timeoutMS: 10000,
  reporters: ["clear-text", "progress-append-only", "json", "html"],
  jsonReporter: { fileName: `js/reports/mutation/${target}.json` },
  htmlReporter: { fileName: `js/reports/mutation/${target}.html` },
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0 },
  // A re-run tests again only the mutants whose code or tests changed since the last one.
  incremental: true,
  incrementalFile: `js/reports/mutation/${target}-incremental.json`,
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
};
