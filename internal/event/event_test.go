package event

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

func TestSlogSink(t *testing.T) {
	var buf bytes.Buffer
	sink := SlogSink{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sink.Record(context.Background(), Event{
		Time: at, Kind: "request.denied", Outcome: Denied, ClientIP: "192.0.2.1",
		Route: "admin", RequestID: "r1", Rule: "policy.deny", Details: map[string]string{"path": "/admin"},
	})
	sink.Record(context.Background(), Event{Time: at, Kind: "backup.verified", Outcome: Success})
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines, want one per event:\n%s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal(lines[0], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"level": "WARN", "msg": "security event", "kind": "request.denied", "outcome": "denied",
		"client_ip": "192.0.2.1", "route": "admin", "request_id": "r1", "rule": "policy.deny",
		"time": "2026-01-02T03:04:05Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if d, _ := got["details"].(map[string]any); d["path"] != "/admin" {
		t.Errorf("details = %v", got["details"])
	}
	var second map[string]any
	if err := json.Unmarshal(lines[1], &second); err != nil {
		t.Fatal(err)
	}
	if second["level"] != "INFO" || second["principal"] != nil || second["client_ip"] != nil {
		t.Errorf("a success event: %v (empty fields must be left out)", second)
	}
}

type count struct{ n int }

func (c *count) Record(context.Context, Event) { c.n++ }

func TestMulti(t *testing.T) {
	a, b := &count{}, &count{}
	Multi{a, Discard{}, b}.Record(context.Background(), Event{Kind: "x"})
	if a.n != 1 || b.n != 1 {
		t.Errorf("Multi reached %d and %d recorders, want 1 and 1", a.n, b.n)
	}
}
