package mfa

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"rsc.io/qr/coding"
	"rsc.io/qr/gf256"
)

// No QR image decoder is in the module graph, so these tests decode the
// rendered symbol themselves: the SVG path is rasterised back to modules, and
// rsc.io/qr/coding, an encoder independent of the one QRCodeSVG uses,
// supplies the geometry of every version (function patterns, format and
// version bits, where each data and check bit sits, block layout). The
// symbol must match that geometry exactly at level M for one mask, its
// Reed-Solomon check bytes must be right, and its data must read back as the
// text.

func TestQRCodeSVGDecodes(t *testing.T) {
	tests := []struct {
		name        string
		text        string
		wantVersion int // 0: any
	}{
		{"short", "otpauth://totp/a?secret=ABC", 0},
		{"typical enrollment", KeyURI("Moat", "alice@example.com", rfcSecret), 0},
		{"unicode names", KeyURI("Müller GmbH", "josé@exämple.com", rfcSecret), 0},
		{"version 7 and up carry version bits", strings.Repeat("a", 130), 8},
		{"two-byte length, several blocks", strings.Repeat("b", 300), 0},
		{"largest accepted", strings.Repeat("c", maxQRText), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg, err := QRCodeSVG(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			checkSVGMarkup(t, svg)
			total, mods := rasterize(t, svg)

			// The rendering is the encoder's matrix inside a light
			// margin of four modules.
			const quiet = 4
			enc, err := qrModules(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if want := enc.size + 2*quiet; total != want {
				t.Fatalf("viewBox side %d, want %d", total, want)
			}
			for y := range total {
				for x := range total {
					inner := x >= quiet && x < quiet+enc.size && y >= quiet && y < quiet+enc.size
					want := inner && enc.at(x-quiet, y-quiet)
					if mods[y][x] != want {
						t.Fatalf("module (%d,%d) dark = %v, encoder says %v", x, y, mods[y][x], want)
					}
				}
			}

			size := total - 2*quiet
			sym := make([][]bool, size)
			for y := range sym {
				sym[y] = mods[y+quiet][quiet : quiet+size]
			}
			version, got := decodeSymbol(t, sym)
			if tt.wantVersion != 0 && version != tt.wantVersion {
				t.Errorf("version %d, want %d", version, tt.wantVersion)
			}
			if got != tt.text {
				t.Fatalf("decoded %q, want %q", got, tt.text)
			}
		})
	}
}

func TestQRCodeSVGRejects(t *testing.T) {
	tests := []struct {
		name, text string
	}{
		{"empty", ""},
		{"over the limit", strings.Repeat("x", maxQRText+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg, err := QRCodeSVG(tt.text)
			if err == nil {
				t.Fatalf("no error, got %d bytes", len(svg))
			}
			if len(tt.text) > 0 && strings.Contains(err.Error(), tt.text[:8]) {
				t.Fatalf("error quotes the text: %v", err)
			}
		})
	}
}

func TestQRCodeSVGCompact(t *testing.T) {
	svg, err := QRCodeSVG(KeyURI("Moat", "alice@example.com", rfcSecret))
	if err != nil {
		t.Fatal(err)
	}
	if len(svg) > 10_000 {
		t.Fatalf("enrollment SVG is %d bytes, want at most 10000", len(svg))
	}
	if n := strings.Count(svg, "<path"); n != 1 {
		t.Fatalf("%d path elements, want 1", n)
	}
}

// checkSVGMarkup parses svg as XML and fails on anything a strict
// Content-Security-Policy would block or that could run code: only svg,
// rect and path elements, only presentation attributes from a short list,
// no text content.
func checkSVGMarkup(t *testing.T, svg string) {
	t.Helper()
	allowed := map[string]map[string]bool{
		"svg": {"xmlns": true, "viewBox": true, "width": true, "height": true,
			"role": true, "aria-label": true, "shape-rendering": true},
		"rect": {"width": true, "height": true, "fill": true},
		"path": {"d": true, "fill": true},
	}
	if !strings.HasPrefix(svg, "<svg ") || !strings.HasSuffix(svg, "</svg>") {
		t.Fatalf("not a single svg element: %.40q", svg)
	}
	for _, bad := range []string{"style", "script", "href", "<!", "<?", "&"} {
		if strings.Contains(svg, bad) {
			t.Fatalf("svg contains %q", bad)
		}
	}
	d := xml.NewDecoder(strings.NewReader(svg))
	d.Strict = true
	depth := 0
	var root xml.StartElement
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			attrs, ok := allowed[tok.Name.Local]
			if !ok || tok.Name.Space != "" {
				t.Fatalf("element <%s:%s> not allowed", tok.Name.Space, tok.Name.Local)
			}
			if depth == 0 {
				root = tok
			} else if tok.Name.Local == "svg" {
				t.Fatal("nested svg")
			}
			for _, a := range tok.Attr {
				if a.Name.Space != "" || !attrs[a.Name.Local] {
					t.Fatalf("attribute %s:%s on <%s> not allowed", a.Name.Space, a.Name.Local, tok.Name.Local)
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if len(bytes.TrimSpace(tok)) > 0 {
				t.Fatalf("text content %q", tok)
			}
		default:
			t.Fatalf("unexpected token %T", tok)
		}
	}
	want := map[string]string{
		"role":            "img",
		"aria-label":      "QR code for your authenticator app",
		"shape-rendering": "crispEdges",
		"xmlns":           "http://www.w3.org/2000/svg",
	}
	for _, a := range root.Attr {
		if w, ok := want[a.Name.Local]; ok {
			if a.Value != w {
				t.Fatalf("%s=%q, want %q", a.Name.Local, a.Value, w)
			}
			delete(want, a.Name.Local)
		}
	}
	if len(want) > 0 {
		t.Fatalf("root lacks %v", want)
	}
}

// rasterize reads the viewBox, checks the background rect covers it in
// white, and paints the path's subpaths, each of which must be a
// module-aligned rectangle "M x y h w v h h z", into a grid.
func rasterize(t *testing.T, svg string) (int, [][]bool) {
	t.Helper()
	var box, bg, d, fill string
	for _, m := range []struct {
		prefix string
		dst    *string
	}{
		{`viewBox="`, &box}, {`<rect width="`, &bg}, {`<path fill="`, &fill}, {` d="`, &d},
	} {
		_, rest, ok := strings.Cut(svg, m.prefix)
		if !ok {
			t.Fatalf("no %s in svg", m.prefix)
		}
		*m.dst, _, _ = strings.Cut(rest, `"`)
	}
	var total int
	if _, err := fmt.Sscanf(box, "0 0 %d %d", &total, new(int)); err != nil || box != fmt.Sprintf("0 0 %d %d", total, total) {
		t.Fatalf("viewBox %q is not a square from the origin", box)
	}
	if !strings.Contains(svg, fmt.Sprintf(`<rect width="%d" height="%d" fill="#fff"/>`, total, total)) || bg != strconv.Itoa(total) {
		t.Fatal("no white background covering the viewBox")
	}
	if fill != "#000" {
		t.Fatalf("path fill %q", fill)
	}
	mods := make([][]bool, total)
	for i := range mods {
		mods[i] = make([]bool, total)
	}
	for sub := range strings.SplitSeq(strings.TrimSuffix(d, "z"), "z") {
		var x, y, w, h, back int
		if _, err := fmt.Sscanf(sub, "M%d %dh%dv%dh%d", &x, &y, &w, &h, &back); err != nil {
			t.Fatalf("subpath %q: %v", sub, err)
		}
		if sub != fmt.Sprintf("M%d %dh%dv%dh%d", x, y, w, h, back) || h != 1 || back != -w || w < 1 ||
			x < 0 || y < 0 || x+w > total || y >= total {
			t.Fatalf("subpath %q is not a one-module-high run inside the viewBox", sub)
		}
		for i := x; i < x+w; i++ {
			if mods[y][i] {
				t.Fatalf("module (%d,%d) painted twice", i, y)
			}
			mods[y][i] = true
		}
	}
	return total, mods
}

// decodeSymbol reads a QR symbol (no quiet zone) and returns its version and
// byte-mode text. It fails the test unless the symbol is a valid level M
// code: every function module as the standard places it, the format bits of
// exactly one mask, correct Reed-Solomon check bytes, and a well-formed
// byte-mode segment followed by the terminator and pad bytes.
func decodeSymbol(t *testing.T, sym [][]bool) (int, string) {
	t.Helper()
	size := len(sym)
	if size < 21 || (size-17)%4 != 0 {
		t.Fatalf("side %d is not 17+4v", size)
	}
	version := (size - 17) / 4

	var plan *coding.Plan
	for mask := coding.Mask(0); mask < 8; mask++ {
		p, err := coding.NewPlan(coding.Version(version), coding.M, mask)
		if err != nil {
			t.Fatal(err)
		}
		if functionModulesMatch(p, sym) {
			if plan != nil {
				t.Fatalf("masks %d and %d both match", plan.Mask, mask)
			}
			plan = p
		}
	}
	if plan == nil {
		t.Fatalf("version %d: function patterns or format bits do not match level M with any mask", version)
	}
	t.Logf("version %d-M, mask %d", version, plan.Mask)

	codewords := make([]byte, plan.DataBytes+plan.CheckBytes)
	for y, row := range plan.Pixel {
		for x, pix := range row {
			switch pix.Role() {
			case coding.Data, coding.Check:
				if sym[y][x] != (pix&coding.Invert != 0) {
					o := pix.Offset()
					codewords[o/8] |= 1 << (7 - o%8)
				}
			}
		}
	}
	data, check := codewords[:plan.DataBytes], codewords[plan.DataBytes:]

	// Data bytes are split over blocks, the last DataBytes%Blocks blocks one
	// byte longer; each block has its own check bytes.
	ne := plan.CheckBytes / plan.Blocks
	short := plan.DataBytes / plan.Blocks
	rs := gf256.NewRSEncoder(coding.Field, ne)
	rest := data
	for b := range plan.Blocks {
		n := short
		if b >= plan.Blocks-plan.DataBytes%plan.Blocks {
			n++
		}
		want := make([]byte, ne)
		rs.ECC(rest[:n], want)
		if !bytes.Equal(check[b*ne:(b+1)*ne], want) {
			t.Fatalf("block %d: check bytes %x, want %x", b, check[b*ne:(b+1)*ne], want)
		}
		rest = rest[n:]
	}

	r := bitReader{buf: data}
	if mode := r.read(4); mode != 0b0100 {
		t.Fatalf("mode indicator %04b, want byte mode 0100", mode)
	}
	countBits := 8
	if version >= 10 {
		countBits = 16
	}
	n := r.read(countBits)
	if n*8 > len(data)*8-r.pos {
		t.Fatalf("byte count %d exceeds the data capacity", n)
	}
	text := make([]byte, n)
	for i := range text {
		text[i] = byte(r.read(8))
	}
	if left := len(data)*8 - r.pos; left > 0 {
		if term := r.read(min(4, left)); term != 0 {
			t.Fatalf("terminator %b, want zeros", term)
		}
		r.pos = (r.pos + 7) &^ 7
		for i, pad := 0, r.pos/8; pad < len(data); i, pad = i+1, pad+1 {
			if want := [2]byte{0xec, 0x11}[i%2]; data[pad] != want {
				t.Fatalf("pad byte %d = %#x, want %#x", pad, data[pad], want)
			}
		}
	}
	return version, string(text)
}

// functionModulesMatch reports whether every module of sym outside the data
// and check bits is the colour plan puts there: finder, alignment and timing
// patterns, format and version bits, the dark module, and remainder bits
// (zero before masking).
func functionModulesMatch(p *coding.Plan, sym [][]bool) bool {
	for y, row := range p.Pixel {
		for x, pix := range row {
			switch pix.Role() {
			case coding.Data, coding.Check:
				continue
			}
			if sym[y][x] != (pix&coding.Black != 0) {
				return false
			}
		}
	}
	return true
}

type bitReader struct {
	buf []byte
	pos int
}

func (r *bitReader) read(n int) int {
	v := 0
	for range n {
		v = v<<1 | int(r.buf[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

func BenchmarkQRCodeSVG(b *testing.B) {
	uri := KeyURI("Moat", "alice@example.com", rfcSecret)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		svg, err := QRCodeSVG(uri)
		if err != nil {
			b.Fatal(err)
		}
		n = len(svg)
	}
	b.ReportMetric(float64(n), "svg-bytes")
}
