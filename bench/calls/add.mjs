// The function every way of the calls benchmark calls (served by js/bin/host.mjs).
export function add(a, b) {
  return a + b;
}
