// The example Node app. It never sees a credential at build time: at run time
// stronghold-init puts STRIPE_SECRET_KEY in its environment and writes the
// database password to the file named by DATABASE_PASSWORD_FILE.
const fs = require("fs");
const http = require("http");

// A credential from NAME_FILE (read on every use: the file is replaced
// atomically when the token rotates) or, failing that, from NAME.
function secret(name) {
  const file = process.env[`${name}_FILE`];
  return file ? fs.readFileSync(file, "utf8") : process.env[name] || "";
}

const server = http.createServer((req, res) => {
  const ready = secret("STRIPE_SECRET_KEY").length > 0 && secret("DATABASE_PASSWORD").length > 0;
  res.writeHead(ready ? 200 : 503, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ ready }));
});

// stronghold-init forwards SIGTERM; finish in-flight requests and exit.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
server.listen(Number(process.env.PORT || 8080));
