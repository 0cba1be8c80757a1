package diagnose

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRules checks that every ID constant of the package names exactly one
// rule, and every rule one ID constant, so no finding ID is declared without
// a rule that produces it, or produced without a constant scripts can use.
func TestRules(t *testing.T) {
	consts := idConstants(t)
	var ids []string
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.id] {
			t.Errorf("rule ID %q appears twice in rules", r.id)
		}
		seen[r.id] = true
		ids = append(ids, r.id)
	}
	sort.Strings(ids)
	if diff := cmp.Diff(ids, consts); diff != "" {
		t.Errorf("rule IDs differ from the ID constants (-rules +constants):\n%s", diff)
	}
}

// TestRuleSetsID checks that Diagnose's findings carry the ID of the rule
// that found them, whatever the rule function put there.
func TestRuleSetsID(t *testing.T) {
	r := rule{id: "the-rule", run: func(*view) *Finding { return &Finding{ID: "another", Title: "x"} }}
	if f := r.check(newView(Snapshot{})); f == nil || f.ID != "the-rule" {
		t.Errorf("check = %+v, want ID the-rule", f)
	}
	if f := (rule{id: "quiet", run: func(*view) *Finding { return nil }}).check(newView(Snapshot{})); f != nil {
		t.Errorf("check of a rule that found nothing = %+v, want nil", f)
	}
}

// idConstants returns the values of the package's constants named ID*,
// sorted, read from its source files.
func idConstants(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !strings.HasPrefix(n.Name, "ID") {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("%s: constant %s is not a string literal", fset.Position(n.Pos()), n.Name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, v)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no ID constants found")
	}
	sort.Strings(out)
	return out
}

// ruleOf returns the rule with the given ID.
func ruleOf(t *testing.T, id string) rule {
	t.Helper()
	for _, r := range rules {
		if r.id == id {
			return r
		}
	}
	t.Fatalf("no rule %q", id)
	return rule{}
}
