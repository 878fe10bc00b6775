package config

import (
	"os"
	"strings"
	"testing"
)

// yamlBlocks returns the fenced yaml blocks of a Markdown page, without
// their indentation, and the line each starts on.
func yamlBlocks(page string) (blocks []string, lines []int) {
	var cur []string
	indent, start, in := "", 0, false
	for i, line := range strings.Split(page, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !in && trimmed == "```yaml":
			in, cur, start = true, nil, i+2
			indent = line[:len(line)-len(strings.TrimLeft(line, " "))]
		case in && trimmed == "```":
			in = false
			blocks, lines = append(blocks, strings.Join(cur, "\n")+"\n"), append(lines, start)
		case in:
			cur = append(cur, strings.TrimPrefix(line, indent))
		}
	}
	return blocks, lines
}

// TestDocsExamples checks that the complete example in
// docs/configuration.md loads and that every other YAML snippet there
// decodes: its keys and value types exist.
func TestDocsExamples(t *testing.T) {
	page, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks, lines := yamlBlocks(string(page))
	if len(blocks) < 4 {
		t.Fatalf("found %d yaml blocks, want the complete example and the snippets", len(blocks))
	}
	t.Run("complete example", func(t *testing.T) {
		c, err := Parse("configuration.md", []byte(blocks[0]))
		if err != nil {
			t.Fatalf("example at line %d does not load:\n%v", lines[0], err)
		}
		if len(c.Routes) < 3 || c.TLS.Dev == nil {
			t.Errorf("example decoded to %+v, want routes and dev TLS", c)
		}
	})
	for i, b := range blocks[1:] {
		onlyComments := true
		for _, l := range strings.Split(b, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				onlyComments = false
			}
		}
		if onlyComments {
			continue
		}
		if _, err := decode("configuration.md", []byte(b)); err != nil {
			t.Errorf("snippet at line %d does not decode:\n%v", lines[i+1], err)
		}
	}
}
