package demoapp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestCreateThenGetAndDelete(t *testing.T) {
	srv := serve(t, newTestApp(t))
	jsonBody := http.Header{"Content-Type": {"application/json; charset=utf-8"}}

	resp, body := do(t, srv, "POST", "/api/items", jsonBody, `{"name": "Drawbridge chain", "price": 99.5}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST status = %d, want 201; body:\n%s", resp.StatusCode, body)
	}
	var created Item
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatalf("POST body: %v", err)
	}
	if created.Name != "Drawbridge chain" || created.Price != 99.5 || created.ID < 1 {
		t.Fatalf("created = %+v", created)
	}
	loc := resp.Header.Get("Location")
	if want := fmt.Sprintf("/api/items/%d", created.ID); loc != want {
		t.Fatalf("Location = %q, want %q", loc, want)
	}

	resp, body = do(t, srv, "GET", loc, nil, "")
	var got Item
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &got) != nil || got != created {
		t.Fatalf("GET %s = %d %s, want the created item %+v", loc, resp.StatusCode, body, created)
	}

	resp, body = do(t, srv, "GET", "/api/items", nil, "")
	var list itemList
	if err := json.Unmarshal([]byte(body), &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/items = %d %s (%v)", resp.StatusCode, body, err)
	}
	if n := len(list.Items); n != len(seedItems)+1 || list.Items[n-1] != created {
		t.Fatalf("list = %+v, want the seed items then %+v", list.Items, created)
	}
	for i := 1; i < len(list.Items); i++ {
		if list.Items[i-1].ID >= list.Items[i].ID {
			t.Fatalf("list not sorted by id: %+v", list.Items)
		}
	}

	if resp, body = do(t, srv, "DELETE", loc, nil, ""); resp.StatusCode != http.StatusNoContent || body != "" {
		t.Fatalf("DELETE = %d %q, want 204 and no body", resp.StatusCode, body)
	}
	if resp, _ = do(t, srv, "GET", loc, nil, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after DELETE = %d, want 404", resp.StatusCode)
	}
	if resp, _ = do(t, srv, "DELETE", loc, nil, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second DELETE = %d, want 404", resp.StatusCode)
	}

	// Ids are never reused.
	_, body = do(t, srv, "POST", "/api/items", jsonBody, `{"name": "Rope", "price": 0}`)
	var next Item
	if err := json.Unmarshal([]byte(body), &next); err != nil || next.ID <= created.ID {
		t.Fatalf("next item = %+v (%v), want an id above %d", next, err, created.ID)
	}
}

func TestCreateRejects(t *testing.T) {
	srv := serve(t, newTestApp(t))
	jsonType := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name       string
		header     http.Header
		body       string
		wantStatus int
		wantDetail string
	}{
		{name: "no content type", body: `{"name":"a","price":1}`, wantStatus: 415, wantDetail: "application/json"},
		{name: "form content type", header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, body: "name=a&price=1", wantStatus: 415},
		{name: "empty body", header: jsonType, wantStatus: 400, wantDetail: "must be a JSON object"},
		{name: "not json", header: jsonType, body: "hello", wantStatus: 400, wantDetail: "not valid JSON"},
		{name: "array", header: jsonType, body: `[1,2]`, wantStatus: 400, wantDetail: "must be a JSON object"},
		{name: "null", header: jsonType, body: `null`, wantStatus: 400, wantDetail: "must be a JSON object"},
		{name: "truncated", header: jsonType, body: `{"name":"a",`, wantStatus: 400, wantDetail: "truncated"},
		{name: "two objects", header: jsonType, body: `{"name":"a","price":1}{}`, wantStatus: 400, wantDetail: "single JSON object"},
		{name: "missing name", header: jsonType, body: `{"price":1}`, wantStatus: 400, wantDetail: `"name" is required`},
		{name: "missing price", header: jsonType, body: `{"name":"a"}`, wantStatus: 400, wantDetail: `"price" is required`},
		{name: "unknown field", header: jsonType, body: `{"name":"a","price":1,"admin":true}`, wantStatus: 400, wantDetail: `unknown field "admin"`},
		{name: "field name in other case", header: jsonType, body: `{"Name":"a","price":1}`, wantStatus: 400, wantDetail: "unknown field"},
		{name: "empty name", header: jsonType, body: `{"name":"","price":1}`, wantStatus: 400, wantDetail: "1 to 100 characters"},
		{name: "name too long", header: jsonType, body: `{"name":"` + strings.Repeat("a", 101) + `","price":1}`, wantStatus: 400, wantDetail: "1 to 100 characters"},
		{name: "blank name", header: jsonType, body: `{"name":"  \t","price":1}`, wantStatus: 400, wantDetail: "only spaces"},
		{name: "null name", header: jsonType, body: `{"name":null,"price":1}`, wantStatus: 400, wantDetail: `"name" must be a string`},
		{name: "number name", header: jsonType, body: `{"name":5,"price":1}`, wantStatus: 400, wantDetail: `"name" must be a string`},
		{name: "string price", header: jsonType, body: `{"name":"a","price":"1"}`, wantStatus: 400, wantDetail: `"price" must be a number`},
		{name: "negative price", header: jsonType, body: `{"name":"a","price":-0.01}`, wantStatus: 400, wantDetail: "zero or more"},
		{name: "price out of range", header: jsonType, body: `{"name":"a","price":1e400}`, wantStatus: 400, wantDetail: `"price" must be a number`},
		{name: "invalid utf-8", header: jsonType, body: "{\"name\":\"\xff\",\"price\":1}", wantStatus: 400, wantDetail: "UTF-8"},
		{name: "body over 64 KiB", header: jsonType, body: `{"name":"a","price":1,"pad":"` + strings.Repeat("x", 64<<10) + `"}`, wantStatus: 413, wantDetail: "65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"X-Request-Id": {"req-123"}}
			for k, v := range tt.header {
				h[k] = v
			}
			resp, body := do(t, srv, "POST", "/api/items", h, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body:\n%s", resp.StatusCode, tt.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			var p problemDoc
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				t.Fatalf("problem body: %v\n%s", err, body)
			}
			if p.Status != tt.wantStatus || p.Title != http.StatusText(tt.wantStatus) || p.Type != "about:blank" {
				t.Errorf("problem = %+v", p)
			}
			if p.RequestID != "req-123" {
				t.Errorf("request_id = %q, want the X-Request-Id sent", p.RequestID)
			}
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail %q lacks %q", p.Detail, tt.wantDetail)
			}
			if strings.Contains(body, "float64") || strings.Contains(body, "Go struct") {
				t.Errorf("detail reveals Go types: %q", p.Detail)
			}
		})
	}

	// Nothing rejected was stored.
	_, body := do(t, srv, "GET", "/api/items", nil, "")
	var list itemList
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Items) != len(seedItems) {
		t.Fatalf("after rejected POSTs the store holds %d items (%v), want %d", len(list.Items), err, len(seedItems))
	}
}

// TestCreateChunkedOverLimit sends a large body without Content-Length, so
// the cap has to act while reading.
func TestCreateChunkedOverLimit(t *testing.T) {
	a := newTestApp(t)
	var sawLength int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawLength = r.ContentLength
		a.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	body := `{"name":"` + strings.Repeat("a", maxBodyBytes) + `","price":1}`
	// Hiding the reader's type keeps the client from learning the length.
	req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/api/items", struct{ io.Reader }{strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sawLength != -1 {
		t.Fatalf("the backend saw Content-Length %d, want an unknown length", sawLength)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", resp.StatusCode)
	}
}

func TestItemIDs(t *testing.T) {
	srv := serve(t, newTestApp(t))
	tests := []struct {
		id   string
		want int
	}{
		{"1", 200},
		{"3", 200},
		{"0", 400},
		{"-1", 400},
		{"+1", 400},
		{"1.0", 400},
		{"abc", 400},
		{"99999999999999999999", 400},
		{"9223372036854775807", 404},
		{"4", 404},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			for _, method := range []string{"GET", "DELETE"} {
				if tt.want == 200 && method == "DELETE" {
					continue
				}
				resp, body := do(t, srv, method, "/api/items/"+tt.id, nil, "")
				if resp.StatusCode != tt.want {
					t.Errorf("%s = %d, want %d; body:\n%s", method, resp.StatusCode, tt.want, body)
				}
			}
		})
	}
}

func TestStoreBound(t *testing.T) {
	if got := New(nil).store.limit; got != 1000 {
		t.Fatalf("default store limit = %d, want 1000", got)
	}
	a := newTestApp(t)
	a.store = newStore(5, seedItems)
	srv := serve(t, a)
	jsonType := http.Header{"Content-Type": {"application/json"}}
	for i := len(seedItems); i < 5; i++ {
		if resp, body := do(t, srv, "POST", "/api/items", jsonType, `{"name":"a","price":1}`); resp.StatusCode != 201 {
			t.Fatalf("POST %d = %d, want 201; body:\n%s", i, resp.StatusCode, body)
		}
	}
	resp, body := do(t, srv, "POST", "/api/items", jsonType, `{"name":"a","price":1}`)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "at most 5 items") {
		t.Fatalf("POST to a full store = %d %s, want 409 saying the limit", resp.StatusCode, body)
	}
	// Deleting makes room again.
	if resp, _ := do(t, srv, "DELETE", "/api/items/1", nil, ""); resp.StatusCode != 204 {
		t.Fatalf("DELETE = %d, want 204", resp.StatusCode)
	}
	if resp, _ := do(t, srv, "POST", "/api/items", jsonType, `{"name":"a","price":1}`); resp.StatusCode != 201 {
		t.Fatalf("POST after DELETE = %d, want 201", resp.StatusCode)
	}
}

// TestStoreConcurrent is meant for -race: writers and readers at once.
func TestStoreConcurrent(t *testing.T) {
	s := newStore(50, nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				it, err := s.add(newItem{Name: fmt.Sprint(w, i), Price: 1})
				if err == nil && i%2 == 0 {
					s.remove(it.ID)
				}
				s.list()
				s.get(int64(i))
			}
		})
	}
	wg.Wait()
	items := s.list()
	if len(items) > 50 {
		t.Fatalf("store holds %d items, over its limit of 50", len(items))
	}
	seen := map[int64]bool{}
	for _, it := range items {
		if seen[it.ID] {
			t.Fatalf("id %d stored twice", it.ID)
		}
		seen[it.ID] = true
	}
}

func TestDecodeNewItem(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    newItem
		wantErr string
	}{
		{name: "plain", body: `{"name":"a","price":1.5}`, want: newItem{Name: "a", Price: 1.5}},
		{name: "spaces around", body: " \n{ \"price\" : 0 , \"name\" : \"Tower\" }\n ", want: newItem{Name: "Tower", Price: 0}},
		{name: "100 characters of 3 bytes", body: `{"name":"` + strings.Repeat("€", 100) + `","price":2}`, want: newItem{Name: strings.Repeat("€", 100), Price: 2}},
		{name: "escaped name", body: `{"name":"\u00e9t\u00e9","price":2}`, want: newItem{Name: "été", Price: 2}},
		{name: "integer price", body: `{"name":"a","price":1e3}`, want: newItem{Name: "a", Price: 1000}},
		{name: "101 characters", body: `{"name":"` + strings.Repeat("é", 101) + `","price":2}`, wantErr: "1 to 100"},
		{name: "boolean price", body: `{"name":"a","price":true}`, wantErr: `"price" must be a number`},
		{name: "object name", body: `{"name":{},"price":1}`, wantErr: `"name" must be a string`},
		{name: "long unknown field is cut", body: `{"` + strings.Repeat("k", 500) + `":1}`, wantErr: "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeNewItem([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if len(err.Error()) > 200 {
					t.Errorf("error is %d bytes long", len(err.Error()))
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("decodeNewItem = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// FuzzDecodeNewItem checks that any body either fails or yields an item
// that satisfies the documented constraints.
func FuzzDecodeNewItem(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","price":1}`,
		`{"name":"","price":-1}`,
		`{"name":"a","price":1,"x":2}`,
		`[]`, `null`, `{"name":"\ud800","price":0}`, `{"price":1e308,"name":"  x "}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := decodeNewItem(body)
		if err != nil {
			if len(err.Error()) > 200 {
				t.Fatalf("error is %d bytes long", len(err.Error()))
			}
			return
		}
		if c := utf8.RuneCountInString(n.Name); c < 1 || c > maxNameRunes || strings.Trim(n.Name, " \t\n\f\r") == "" {
			t.Fatalf("accepted name %q", n.Name)
		}
		if !(n.Price >= 0) {
			t.Fatalf("accepted price %v", n.Price)
		}
	})
}
