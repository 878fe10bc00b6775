package proxy

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// wsAccept computes Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsReadFrame reads one WebSocket frame, unmasking it when masked.
func wsReadFrame(r io.Reader) (opcode byte, payload []byte, err error) {
	var hdr [2]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	var mask [4]byte
	masked := hdr[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return hdr[0] & 0x0f, payload, nil
}

// wsFrame builds a final text frame of fewer than 126 bytes, masked when a
// client sends it.
func wsFrame(payload string, masked bool) []byte {
	b := []byte{0x81, byte(len(payload))}
	if !masked {
		return append(b, payload...)
	}
	b[1] |= 0x80
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i := 0; i < len(payload); i++ {
		b = append(b, payload[i]^mask[i%4])
	}
	return b
}

// wsEchoUpstream accepts WebSocket handshakes and echoes text frames,
// counting in stats (when not nil) what it does. Its 101 answer carries a
// banner and a request id of its own.
func wsEchoUpstream(t *testing.T, stats *wsStats) string {
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want a websocket", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		if stats != nil {
			stats.handshakes.Add(1)
			stats.open.Add(1)
			defer stats.open.Add(-1)
		}
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: %s\r\nServer: leaky/1.0\r\nX-Request-Id: upstream-id\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Flush()
		for {
			op, payload, err := wsReadFrame(brw)
			if err != nil || op == 0x8 {
				return
			}
			if _, err := conn.Write(wsFrame("echo: "+string(payload), false)); err != nil {
				return
			}
		}
	}).URL
}

func TestWebSocket(t *testing.T) {
	p, _ := newProxy(t, Options{Upstreams: urls(t, wsEchoUpstream(t, nil)), MaxResponseBody: 10})
	f := front(t, p, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.URL, "http://"))
	must(t, err)
	defer conn.Close()
	must(t, conn.SetDeadline(time.Now().Add(5*time.Second)))

	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	handshake := "GET /chat HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	// The first frame goes in the same write as the handshake, so that it
	// reaches Moat before the upstream has answered.
	_, err = conn.Write(append([]byte(handshake), wsFrame("first", true)...))
	must(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		t.Errorf("Sec-WebSocket-Accept %q, want %q", got, wsAccept(key))
	}
	if resp.Header.Get("Server") != "" {
		t.Error("the upstream's Server banner reached the client")
	}
	if ids := resp.Header["X-Request-Id"]; len(ids) != 1 || !strings.HasPrefix(ids[0], "req-") {
		t.Errorf("X-Request-Id %q, want Moat's id alone", ids)
	}
	for _, msg := range []string{"first", "second message, longer than the response cap"} {
		if msg != "first" {
			_, err := conn.Write(wsFrame(msg, true))
			must(t, err)
		}
		op, payload, err := wsReadFrame(br)
		must(t, err)
		if op != 1 || string(payload) != "echo: "+msg {
			t.Errorf("got opcode %d %q, want text %q", op, payload, "echo: "+msg)
		}
	}
}

func TestUpgradeOnlyWebSocket(t *testing.T) {
	up := echoUpstream(t)
	p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL)})
	req, _ := http.NewRequest(http.MethodGet, front(t, p, nil).URL+"/", nil)
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")
	s := decodeSeen(t, do(t, req))
	for _, k := range []string{"Upgrade", "Connection", "Http2-Settings"} {
		if v := s.Header.Get(k); v != "" {
			t.Errorf("%s: %q reached the upstream; h2c must never be passed", k, v)
		}
	}
}

func TestStreamingFlushes(t *testing.T) {
	tests := []struct {
		name  string
		ctype string
	}{
		{"server-sent events", "text/event-stream"},
		{"unknown length", "application/x-ndjson"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := make(chan struct{})
			up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.ctype)
				for i := 1; i <= 3; i++ {
					fmt.Fprintf(w, "data: %d\n\n", i)
					http.NewResponseController(w).Flush()
					select {
					case <-next:
					case <-r.Context().Done():
						return
					}
				}
			})
			p, _ := newProxy(t, Options{Upstreams: urls(t, up.URL), Timeout: 5 * time.Second})
			resp := get(t, front(t, p, nil).URL+"/events")
			defer resp.Body.Close()
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					if sc.Text() != "" {
						lines <- sc.Text()
					}
				}
			}()
			// The upstream sends event i+1 only after the client got event
			// i, so a proxy that buffered would stall here.
			for i := 1; i <= 3; i++ {
				select {
				case l := <-lines:
					if want := fmt.Sprintf("data: %d", i); l != want {
						t.Fatalf("got %q, want %q", l, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("event %d did not arrive before the stream went on", i)
				}
				next <- struct{}{}
			}
			if _, ok := <-lines; ok {
				t.Error("want the stream to end after three events")
			}
		})
	}
}
