package campaigns_test

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const goldenDir = "testdata/golden"

// goldenText is the file form of a rendered message: every part under a
// marker line, so a diff shows which part changed.
func goldenText(r campaigns.Rendered) string {
	var b strings.Builder
	b.WriteString("--- subject\n" + r.Subject + "\n")
	b.WriteString("--- text\n" + r.Text + "\n")
	b.WriteString("--- html\n" + r.HTML)
	if !strings.HasSuffix(r.HTML, "\n") {
		b.WriteString("\n")
	}
	if r.ContentSID != "" {
		b.WriteString("--- content_sid\n" + r.ContentSID + "\n")
		keys := make([]string, 0, len(r.ContentVariables))
		for k := range r.ContentVariables {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString("--- content_variables." + k + "\n" + r.ContentVariables[k] + "\n")
		}
	}
	return b.String()
}

// TestSeedGolden renders every seed campaign on every channel with the
// sample data (and the campaign's own offer for the sample customer, who
// likes the pool) and compares with testdata/golden/<campaign>.<channel>.txt.
// Run with -update to rewrite the files after an intended change.
func TestSeedGolden(t *testing.T) {
	t.Parallel()
	set, err := campaigns.LoadSeed()
	if err != nil {
		t.Fatal(err)
	}
	if len(set.All()) == 0 {
		t.Fatal("no seed campaigns")
	}
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	for _, c := range set.All() {
		for _, ch := range c.Channels {
			name := c.ID + "." + string(ch) + ".txt"
			want[name] = true
			d := campaigns.SampleData(c.Trigger.Event)
			if o, ok := c.ChooseOffer(d.Customer); ok {
				d.Offer = o // the campaign's own offer, as a customer gets it
			}
			r, err := c.Render(ch, d)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			got := goldenText(r)
			path := filepath.Join(goldenDir, name)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s: %v (run go test -update to create it)", name, err)
				continue
			}
			if string(b) != got {
				t.Errorf("%s differs from the golden file (run go test -update after an intended change)\n--- got:\n%s\n--- want:\n%s", name, got, b)
			}
		}
	}
	// No golden file outlives its campaign or channel.
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := filepath.Base(f); !want[name] {
			if *update {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("stale golden file %s (run go test -update)", name)
		}
	}
}
