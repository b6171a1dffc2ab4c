// A stand-in Go service for examples/go.Dockerfile: it reads the credentials
// stronghold-init hands it (one in the environment, one as a file), reports
// their SHA-256 fingerprints (never the values), and exits on SIGTERM with 0.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func fingerprint(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}

func main() {
	key := os.Getenv("STRIPE_SECRET_KEY")
	password, err := os.ReadFile(os.Getenv("DATABASE_PASSWORD_FILE"))
	if key == "" || err != nil {
		fmt.Fprintln(os.Stderr, "go-app: credentials missing")
		os.Exit(3)
	}
	fmt.Printf("{\"event\":\"ready\",\"pid\":%d,\"ppid\":%d,\"key\":\"%s\",\"password\":\"%s\"}\n",
		os.Getpid(), os.Getppid(), fingerprint(key), fingerprint(string(password)))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	received := <-stop
	fmt.Printf("{\"event\":\"%s\"}\n", received)
}
