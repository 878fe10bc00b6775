package mfa

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/boombuler/barcode/qr"
)

const (
	// quietZone is the light margin around the code, in modules: the four
	// ISO/IEC 18004 asks for, without which phone cameras often miss the code.
	quietZone = 4
	// svgModulePixels sets the default rendered size: whole pixels per
	// module keep edges sharp at 100% zoom. A page may resize the image.
	svgModulePixels = 4
	// maxQRText bounds the input. A key URI is about 150 bytes; this is far
	// more than any enrollment needs and well under a QR code's capacity.
	maxQRText = 1024
)

// QRCodeSVG renders text (a KeyURI) as a QR code with medium error correction
// and a four-module quiet zone, in a standalone SVG document meant to be
// inlined in a page.
//
// The SVG is only a white <rect> and one <path> of the dark modules, sized by
// viewBox, width and height and coloured by fill attributes. It has no style
// attribute, <style> element, script, event handler or external reference, so
// a page served with a strict Content-Security-Policy (style-src 'self', no
// script) shows it unchanged. The background is drawn so the code stays
// readable on a dark page.
//
// The SVG carries the secret in the URI it encodes: serve it with
// Cache-Control: no-store, and only to the account's owner.
func QRCodeSVG(text string) (string, error) {
	if text == "" {
		return "", errors.New("rendering qr code: empty text")
	}
	if len(text) > maxQRText {
		return "", fmt.Errorf("rendering qr code: text is %d bytes, limit %d", len(text), maxQRText)
	}
	m, err := qrModules(text)
	if err != nil {
		return "", err
	}
	return renderSVG(m), nil
}

// moduleGrid is a square QR symbol without its quiet zone: dark[y*size+x]
// reports whether the module in row y, column x is dark.
type moduleGrid struct {
	size int
	dark []bool
}

func (g moduleGrid) at(x, y int) bool { return g.dark[y*g.size+x] }

// qrModules encodes text at level M. The encoder picks the smallest version
// that fits and the mask with the lowest ISO/IEC 18004 penalty score, which
// is what keeps large runs and finder-like shapes out of the data area.
// Errors from the encoder are not wrapped: they may quote the text.
func qrModules(text string) (moduleGrid, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return moduleGrid{}, errors.New("rendering qr code: text does not fit in a qr code")
	}
	b := code.Bounds()
	size := b.Dx()
	if size != b.Dy() || size < 21 {
		return moduleGrid{}, fmt.Errorf("rendering qr code: encoder returned a %dx%d symbol", b.Dx(), b.Dy())
	}
	g := moduleGrid{size: size, dark: make([]bool, size*size)}
	for y := range size {
		for x := range size {
			r, _, _, _ := code.At(b.Min.X+x, b.Min.Y+y).RGBA()
			g.dark[y*size+x] = r < 0x8000
		}
	}
	return g, nil
}

// renderSVG draws g with the quiet zone around it. Each horizontal run of
// dark modules becomes one rectangle subpath "M x y h w v1 h -w z" of a
// single path, which keeps a typical enrollment code under 10 KB.
func renderSVG(g moduleGrid) string {
	total := g.size + 2*quietZone
	dim := strconv.Itoa(total)
	px := strconv.Itoa(total * svgModulePixels)

	var b strings.Builder
	b.Grow(256 + g.size*g.size*3)
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 `)
	b.WriteString(dim + " " + dim)
	b.WriteString(`" width="` + px + `" height="` + px)
	b.WriteString(`" role="img" aria-label="QR code for your authenticator app" shape-rendering="crispEdges">`)
	b.WriteString(`<rect width="` + dim + `" height="` + dim + `" fill="#fff"/>`)
	b.WriteString(`<path fill="#000" d="`)
	var num [20]byte
	for y := range g.size {
		for x := 0; x < g.size; {
			if !g.at(x, y) {
				x++
				continue
			}
			start := x
			for x < g.size && g.at(x, y) {
				x++
			}
			w := int64(x - start)
			b.WriteByte('M')
			b.Write(strconv.AppendInt(num[:0], int64(start+quietZone), 10))
			b.WriteByte(' ')
			b.Write(strconv.AppendInt(num[:0], int64(y+quietZone), 10))
			b.WriteByte('h')
			b.Write(strconv.AppendInt(num[:0], w, 10))
			b.WriteString("v1h-")
			b.Write(strconv.AppendInt(num[:0], w, 10))
			b.WriteByte('z')
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String()
}
