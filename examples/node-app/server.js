// The example Node app. It never sees a credential at build time: at run time
// stronghold-init puts STRIPE_SECRET_KEY in its environment and writes the
// database password to the file named by DATABASE_PASSWORD_FILE.
const fs = require("fs");
const http = require("http");

function databasePassword() {
  // Read on every use: the file is replaced atomically when the token rotates.
  return fs.readFileSync(process.env.DATABASE_PASSWORD_FILE, "utf8");
}

const server = http.createServer((req, res) => {
  const ready = Boolean(process.env.STRIPE_SECRET_KEY) && databasePassword().length > 0;
  res.writeHead(ready ? 200 : 503, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ ready }));
});

// stronghold-init forwards SIGTERM; finish in-flight requests and exit.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
server.listen(Number(process.env.PORT || 8080));
