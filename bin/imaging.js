#!/usr/bin/env node
// The package bin: runs the compiled CLI (npm install builds it through the prepare script).
require('../dist/cli/main.js');
