// The same add(a, b) as add.mjs, as CommonJS for JSPyBridge's require().
module.exports = {
  add(a, b) {
    return a + b;
  },
};
