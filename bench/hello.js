// The app of bench/balancer.py: a minimal Node HTTP server on $PORT that
// answers every request with a short text, as PM2's cluster examples do.
// It runs unchanged under pmd (one process per instance, each on its own
// private $PORT) and under PM2's cluster mode (workers share $PORT through
// Node's cluster module).
'use strict';

const http = require('http');

const body = 'hello\n';
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});

server.listen(Number(process.env.PORT), () => {
  // PM2 with wait_ready would wait for this; harmless without an IPC channel.
  if (process.send) process.send('ready');
});

// Graceful stop, as PM2's documentation recommends for a zero-downtime
// reload (PM2 sends SIGINT, pmd SIGTERM by default): stop accepting, then
// exit once the connections are gone (since Node 19, close() also closes
// the idle keep-alive ones; a request sent on one just then is lost, which
// is what a reload without a balancer in front risks). The manager's kill
// timeout is the backstop.
function stop() {
  server.close(() => process.exit(0));
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
