/**
 * Preloaded into a process under test (`node -r env-read-recorder.js ...`): records the names of
 * the environment variables the process reads, and writes them as JSON to
 * <tmpdir>/imaging-env-reads/<pid>.json when it exits. The chart contract test compares them with
 * the environment a workload is given.
 *
 * Copying the whole environment (a spread, or a worker inheriting it) enumerates it first and
 * then reads every key in the same tick: reads right after an enumeration are not counted, only
 * reads by name.
 */
/* global queueMicrotask */
'use strict';
const { mkdirSync, writeFileSync } = require('fs');
const { join } = require('path');

const real = process.env;
const read = new Set();
let enumerating = false;

process.env = new Proxy(real, {
  get(target, key) {
    if (typeof key === 'string' && !enumerating) read.add(key);
    return Reflect.get(target, key);
  },
  has(target, key) {
    if (typeof key === 'string' && !enumerating) read.add(key);
    return Reflect.has(target, key);
  },
  ownKeys(target) {
    enumerating = true;
    queueMicrotask(() => (enumerating = false));
    return Reflect.ownKeys(target);
  },
});

process.on('exit', () => {
  // A fixed place: the process's own TMPDIR may differ from the test's.
  const dir = '/tmp/imaging-env-reads';
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify([...read].sort()));
});
