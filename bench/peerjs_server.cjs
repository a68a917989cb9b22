// Starts the PeerJS server (npm package `peer`) for the benchmark, the way an operator would run it
// for many users: on loopback, with its concurrent-connection limit raised (the default of 5,000
// would refuse the 10,000-client scenario).
//
// Why not `npx peerjs`: that CLI logs one line per connect and disconnect to stdout, which would
// charge PeerJS for console I/O that XES does not do. This uses the library's own PeerServer()
// with the same defaults, minus the logging. alive_timeout is raised from 60-90 s to 10 min so that
// clients in the relay scenarios (which send no HEARTBEAT) are not dropped mid-run; the idle
// scenario still sends HEARTBEAT every 5 s, as the PeerJS client library does.
//
// Usage: node bench/peerjs_server.cjs PORT [CONCURRENT_LIMIT]
"use strict";
const { PeerServer } = require("peer");

const port = Number(process.argv[2] || 9000);
const limit = Number(process.argv[3] || 100000);

const server = PeerServer(
  {
    host: "127.0.0.1",
    port,
    path: "/",
    key: "peerjs",
    concurrent_limit: limit,
    alive_timeout: 600000,
  },
  (http) => {
    const addr = http.address();
    // The bench waits for this line before it starts.
    console.log(`PEERJS READY ws://${addr.address}:${addr.port}/peerjs`);
  },
);
server.on("error", (err) => console.error(`peerjs error: ${err}`));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
