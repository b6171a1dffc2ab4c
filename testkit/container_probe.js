// The app the container tests run under stronghold-init (mounted at /probe/probe.js).
// It reports what it received as one JSON line per event on stdout: sha256 digests
// of credential values, never the values themselves (test output must hold none).
const crypto = require("crypto");
const fs = require("fs");
const { execFileSync } = require("child_process");

const digest = (value) => crypto.createHash("sha256").update(value).digest("hex");
const say = (message) => process.stdout.write(JSON.stringify(message) + "\n");

const env = {};
const files = {};
for (const [name, value] of Object.entries(process.env)) {
  env[name] = /(KEY|PASSWORD|TOKEN)$/.test(name) ? digest(value) : value;
  if (name.endsWith("_FILE") && value.startsWith("/")) {
    try {
      const stat = fs.statSync(value);
      files[name] = { sha256: digest(fs.readFileSync(value, "utf8")), mode: (stat.mode & 0o777).toString(8) };
    } catch (error) {
      files[name] = { error: error.code };
    }
  }
}
let pid1 = "";
try {
  pid1 = fs.readFileSync("/proc/1/cmdline", "utf8").split("\0").join(" ");
} catch (error) {
  pid1 = `unreadable: ${error.code}`;
}

const exitCode = Number(process.env.PROBE_EXIT_CODE || 0);
process.on("SIGTERM", () => {
  say({ event: "SIGTERM" });
  process.exit(exitCode);
});
process.on("SIGHUP", () => say({ event: "SIGHUP" }));

say({ event: "ready", pid: process.pid, ppid: process.ppid, uid: process.getuid(), env, env_names: Object.keys(env), files, pid1 });

if (process.env.PROBE_ORPHANS) {
  // A shell that leaves two background children behind and exits: they become orphans.
  const out = execFileSync("sh", ["-c", "sleep 2 </dev/null >/dev/null 2>&1 & echo $!; sleep 3 </dev/null >/dev/null 2>&1 & echo $!"]);
  say({ event: "orphans", pids: out.toString().trim().split("\n").map(Number) });
}
setInterval(() => {}, 1 << 30);
