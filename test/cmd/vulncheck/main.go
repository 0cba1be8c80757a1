// Command vulncheck runs govulncheck on csrguard and fails on every
// vulnerability csrguard's code reaches (govulncheck's "called" findings,
// with a symbol-level trace) unless hack/govulncheck-accepted.txt accepts it
// with a reason. It prints what it found, accepted or not, and the accepted
// entries nothing matched any more (so they can be removed).
//
//	go run ./test/cmd/vulncheck -govulncheck BIN -db DIR [-accepted FILE] [packages]
//
// hack/vulncheck.sh builds govulncheck and the offline database and runs it.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
)

func main() {
	bin := flag.String("govulncheck", "govulncheck", "The govulncheck binary.")
	db := flag.String("db", "", "The vulnerability database directory (govulncheck -db file://DIR).")
	acceptedFile := flag.String("accepted", "hack/govulncheck-accepted.txt", "Accepted findings: one per line, `ID reason`; # starts a comment.")
	flag.Parse()
	if *db == "" {
		fmt.Fprintln(os.Stderr, "vulncheck: --db is required")
		os.Exit(2)
	}
	if err := run(*bin, *db, *acceptedFile, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(1)
	}
}

func run(bin, db, acceptedFile string, pkgs []string) error {
	accepted, err := readAccepted(acceptedFile)
	if err != nil {
		return err
	}
	if len(pkgs) == 0 {
		pkgs = []string{"./..."}
	}
	cmd := exec.Command(bin, append([]string{"-db", "file://" + db, "-format", "json"}, pkgs...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	called, err := calledFindings(out)
	if werr := cmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("govulncheck: %w", werr)
	}
	if err != nil {
		return err
	}
	var failing []string
	for _, id := range slices.Sorted(maps.Keys(called)) {
		if reason, ok := accepted[id]; ok {
			fmt.Printf("accepted  %s %s (%s): %s\n", id, called[id].summary, called[id].fixed, reason)
			continue
		}
		fmt.Printf("FOUND     %s %s (%s)\n", id, called[id].summary, called[id].fixed)
		failing = append(failing, id)
	}
	for _, id := range slices.Sorted(maps.Keys(accepted)) {
		if _, ok := called[id]; !ok {
			fmt.Printf("unused    %s is accepted in %s but no longer found: remove it\n", id, acceptedFile)
		}
	}
	if len(failing) > 0 {
		return fmt.Errorf("%d vulnerabilities reached by csrguard's code: upgrade the module (or Go), or accept each in %s with a reason", len(failing), acceptedFile)
	}
	fmt.Printf("no vulnerability reached by csrguard's code is unaccepted (%d accepted)\n", len(called))
	return nil
}

// finding is what is printed of one vulnerability.
type finding struct{ summary, fixed string }

// message is one JSON object of govulncheck's -format json stream; only the
// parts read here.
type message struct {
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Function string `json:"function"`
		} `json:"trace"`
	} `json:"finding"`
}

// calledFindings returns the vulnerabilities whose findings have a trace
// that names a function: csrguard's code reaches the vulnerable symbol
// (govulncheck orders a trace from that symbol to csrguard's code).
func calledFindings(r io.Reader) (map[string]finding, error) {
	summaries := map[string]string{}
	called := map[string]finding{}
	dec := json.NewDecoder(r)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("read govulncheck's output: %w", err)
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		if f := m.Finding; f != nil && len(f.Trace) > 0 && f.Trace[0].Function != "" {
			fixed := "no fix"
			if f.FixedVersion != "" {
				fixed = "fixed in " + f.Trace[0].Module + "@" + f.FixedVersion
			}
			called[f.OSV] = finding{fixed: fixed}
		}
	}
	for id, f := range called {
		f.summary = summaries[id]
		called[id] = f
	}
	return called, nil
}

// readAccepted reads `ID reason` lines; a line without a reason is an error:
// an accepted vulnerability says why.
func readAccepted(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	accepted := map[string]string{}
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason, _ := strings.Cut(line, " ")
		if strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("%s:%d: %s is accepted without a reason", path, n, id)
		}
		accepted[id] = strings.TrimSpace(reason)
	}
	return accepted, s.Err()
}
