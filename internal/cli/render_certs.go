package cli

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/csrguard/csrguard/internal/diagnose"
	"github.com/csrguard/csrguard/internal/human"
)

// The orders certs sorts rows in (--sort-by).
const (
	sortByNode   = "node"
	sortByExpiry = "expiry"
)

// certsOutput is what certs prints: one row per node, then the API server's
// and the kubeconfig's certificates.
type certsOutput struct {
	Certificates []certRow   `json:"certificates"`
	Other        []otherCert `json:"other,omitempty"`
}

// certRow is a diagnose.CertRow as certs prints it.
type certRow struct {
	Node string `json:"node"`
	// Expires is RFC 3339, null when no certificate is known.
	Expires *time.Time `json:"expires"`
	// ResidualSeconds is whole seconds to expiry (negative once expired),
	// null when no certificate is known; Residual is the same, humanised.
	ResidualSeconds *int64 `json:"residualSeconds"`
	Residual        string `json:"residual"`
	Issuer          string `json:"issuer"`
	Source          string `json:"source"`
	State           string `json:"state"`
	SANsMatch       *bool  `json:"sansMatch"`
}

// newCertsOutput sorts rows by sortBy: "node", or "expiry" (soonest first,
// nodes without a known certificate before all); other follows them.
func newCertsOutput(rows []diagnose.CertRow, sortBy string, other []otherCert) certsOutput {
	rows = append([]diagnose.CertRow(nil), rows...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Node < rows[j].Node })
	if sortBy == sortByExpiry {
		sort.SliceStable(rows, func(i, j int) bool {
			a, b := rows[i], rows[j]
			if a.Expires.IsZero() != b.Expires.IsZero() {
				return a.Expires.IsZero()
			}
			return a.Expires.Before(b.Expires)
		})
	}
	out := certsOutput{Certificates: []certRow{}, Other: other}
	for _, r := range rows {
		c := certRow{Node: r.Node, Residual: "-", Issuer: r.Issuer, Source: r.Source, State: r.State, SANsMatch: r.SANsMatch}
		if !r.Expires.IsZero() {
			t := r.Expires.UTC()
			secs := int64(r.Residual / time.Second)
			c.Expires, c.ResidualSeconds, c.Residual = &t, &secs, human.Duration(r.Residual)
		}
		out.Certificates = append(out.Certificates, c)
	}
	return out
}

// names are the nodes, as node/NAME.
func (c certsOutput) names() []string {
	var out []string
	for _, r := range c.Certificates {
		out = append(out, "node/"+r.Node)
	}
	return out
}

// table prints NODE EXPIRES RESIDUAL ISSUER SOURCE STATE (wide: and whether
// the SANs match the Node), then the other certificates.
func (c certsOutput) table(w io.Writer, o tableOptions) error {
	tw := newTabWriter(w)
	if !o.noHeaders {
		fmt.Fprint(tw, "NODE\tEXPIRES\tRESIDUAL\tISSUER\tSOURCE\tSTATE")
		if o.wide {
			fmt.Fprint(tw, "\tSANS")
		}
		fmt.Fprintln(tw)
	}
	for _, r := range c.Certificates {
		expires, issuer := "-", r.Issuer
		if r.Expires != nil {
			expires = r.Expires.Format(time.RFC3339)
		}
		if issuer == "" {
			issuer = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s", r.Node, expires, r.Residual, issuer, r.Source, r.State)
		if o.wide {
			sans := "-"
			switch {
			case r.SANsMatch == nil:
			case *r.SANsMatch:
				sans = "match"
			default:
				sans = "mismatch"
			}
			fmt.Fprintf(tw, "\t%s", sans)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.Other) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = newTabWriter(w)
	if !o.noHeaders {
		fmt.Fprintln(tw, "OTHER CERTIFICATE\tEXPIRES\tRESIDUAL\tSUBJECT\tISSUER\tSOURCE")
	}
	for _, x := range c.Other {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Name, x.Expires.UTC().Format(time.RFC3339),
			human.Duration(time.Duration(x.ResidualSeconds)*time.Second), x.Subject, x.Issuer, x.Source)
	}
	return tw.Flush()
}
