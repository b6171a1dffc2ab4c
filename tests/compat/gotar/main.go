// gotar lists a tar as Go's archive/tar reads it, the reader docker, containerd,
// podman and skopeo extract layers with: one line per member,
// "<hex name> <hex typeflag> <size> <sha256 of the content Read returns>",
// then "OK", or "ERROR <reason>" at the first error (exit 1). Global pax
// headers are not listed: every engine ignores them. tests/test_audit_tar_go.py
// compares this with the audit's own reader. Standard library only.
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	reader := tar.NewReader(bufio.NewReaderSize(os.Stdin, 1<<20))
	for {
		header, err := reader.Next()
		if err == io.EOF {
			fmt.Fprintln(out, "OK")
			return
		}
		if err != nil {
			fail(out, err)
		}
		if header.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		digest := sha256.New()
		count, err := io.Copy(digest, reader)
		if err != nil {
			fail(out, err)
		}
		fmt.Fprintf(out, "%s %s %d %s\n", hex.EncodeToString([]byte(header.Name)),
			hex.EncodeToString([]byte{header.Typeflag}), count, hex.EncodeToString(digest.Sum(nil)))
	}
}

func fail(out *bufio.Writer, err error) {
	fmt.Fprintf(out, "ERROR %v\n", err)
	out.Flush()
	os.Exit(1)
}
