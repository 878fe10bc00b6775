package demoapp

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Limits of the items API.
const (
	maxItems     = 1000     // items the store holds at most
	maxBodyBytes = 64 << 10 // largest POST /api/items body
	maxNameRunes = 100      // longest item name, in characters
)

// seedItems are in the store when the backend starts.
var seedItems = []newItem{
	{Name: "Drawbridge", Price: 1200},
	{Name: "Portcullis", Price: 850.5},
	{Name: "Moat water, one litre", Price: 0.25},
}

// Item is one entry of the demo store.
type Item struct {
	ID    int64   `json:"id"`
	Name  string  `json:"name"`
	Price float64 `json:"price"`
}

// newItem is a validated POST /api/items body.
type newItem struct {
	Name  string
	Price float64
}

// errStoreFull is returned by store.add when the store holds maxItems.
var errStoreFull = errors.New("store is full")

// store is the in-memory item store. It is safe for concurrent use.
type store struct {
	mu     sync.Mutex
	items  map[int64]Item
	nextID int64
	limit  int
}

func newStore(limit int, seed []newItem) *store {
	s := &store{items: make(map[int64]Item), nextID: 1, limit: limit}
	for _, n := range seed {
		_, _ = s.add(n)
	}
	return s
}

// list returns every item, by increasing id.
func (s *store) list() []Item {
	s.mu.Lock()
	out := make([]Item, 0, len(s.items))
	for _, it := range s.items {
		out = append(out, it)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Item) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (s *store) get(id int64) (Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[id]
	return it, ok
}

// add stores n under a new id, never reused, or fails with errStoreFull.
func (s *store) add(n newItem) (Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.items) >= s.limit {
		return Item{}, errStoreFull
	}
	it := Item{ID: s.nextID, Name: n.Name, Price: n.Price}
	s.nextID++
	s.items[it.ID] = it
	return it, nil
}

// remove deletes the item id and reports whether it existed.
func (s *store) remove(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.items[id]
	delete(s.items, id)
	return ok
}

// itemList is the body of GET /api/items.
type itemList struct {
	Items []Item `json:"items"`
}

func (a *App) listItems(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, itemList{Items: a.store.list()})
}

func (a *App) getItem(w http.ResponseWriter, r *http.Request) {
	id, ok := itemID(w, r)
	if !ok {
		return
	}
	it, found := a.store.get(id)
	if !found {
		writeProblem(w, r, http.StatusNotFound, fmt.Sprintf("no item with id %d", id))
		return
	}
	writeJSON(w, http.StatusOK, it)
}

func (a *App) createItem(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r.Header.Get("Content-Type")) {
		writeProblem(w, r, http.StatusUnsupportedMediaType, "send the item as application/json")
		return
	}
	if r.ContentLength > maxBodyBytes {
		writeProblem(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body may be at most %d bytes", maxBodyBytes))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body may be at most %d bytes", maxBodyBytes))
			return
		}
		writeProblem(w, r, http.StatusBadRequest, "the body could not be read")
		return
	}
	n, err := decodeNewItem(body)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, err.Error())
		return
	}
	it, err := a.store.add(n)
	if err != nil {
		writeProblem(w, r, http.StatusConflict, fmt.Sprintf("the demo store holds at most %d items; delete some first", a.store.limit))
		return
	}
	a.logger.Info("item created", "id", it.ID, "request_id", r.Header.Get("X-Request-Id"))
	w.Header().Set("Location", "/api/items/"+strconv.FormatInt(it.ID, 10))
	writeJSON(w, http.StatusCreated, it)
}

func (a *App) deleteItem(w http.ResponseWriter, r *http.Request) {
	id, ok := itemID(w, r)
	if !ok {
		return
	}
	if !a.store.remove(id) {
		writeProblem(w, r, http.StatusNotFound, fmt.Sprintf("no item with id %d", id))
		return
	}
	a.logger.Info("item deleted", "id", id, "request_id", r.Header.Get("X-Request-Id"))
	w.WriteHeader(http.StatusNoContent)
}

// itemID parses the {id} path value, a positive integer. On failure it has
// written a 400 problem and returns false.
func itemID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 || strings.HasPrefix(raw, "+") {
		writeProblem(w, r, http.StatusBadRequest, "the item id must be a positive integer")
		return 0, false
	}
	return id, true
}

// isJSON reports whether a Content-Type header names application/json.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// decodeNewItem parses and validates a POST /api/items body: one JSON
// object with exactly the fields name (1 to 100 characters, not only
// spaces) and price (a number, zero or more). Field names match exactly, as
// the OpenAPI schema says. Its errors are meant for the client.
func decodeNewItem(body []byte) (newItem, error) {
	if !utf8.Valid(body) {
		return newItem{}, errors.New("the body must be UTF-8 JSON")
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return newItem{}, describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newItem{}, errors.New("the body must hold a single JSON object")
	}
	if fields == nil {
		return newItem{}, errors.New("the body must be a JSON object")
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if k != "name" && k != "price" {
			return newItem{}, fmt.Errorf("unknown field %q; only \"name\" and \"price\" are allowed", truncate(k, 40))
		}
	}
	rawName, ok := fields["name"]
	if !ok {
		return newItem{}, errors.New(`"name" is required`)
	}
	rawPrice, ok := fields["price"]
	if !ok {
		return newItem{}, errors.New(`"price" is required`)
	}
	var name string
	if !bytes.HasPrefix(rawName, []byte(`"`)) || json.Unmarshal(rawName, &name) != nil {
		return newItem{}, errors.New(`"name" must be a string`)
	}
	var price float64
	if c := firstByte(rawPrice); (c != '-' && (c < '0' || c > '9')) || json.Unmarshal(rawPrice, &price) != nil {
		return newItem{}, errors.New(`"price" must be a number`)
	}
	if n := utf8.RuneCountInString(name); n < 1 || n > maxNameRunes {
		return newItem{}, fmt.Errorf(`"name" must be 1 to %d characters`, maxNameRunes)
	}
	if strings.Trim(name, " \t\n\f\r") == "" { // the schema's pattern \S
		return newItem{}, errors.New(`"name" must not be only spaces`)
	}
	if price < 0 {
		return newItem{}, errors.New(`"price" must be zero or more`)
	}
	return newItem{Name: name, Price: price}, nil
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// truncate shortens s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// describeJSONError turns a decoding error into a message for the client
// that does not mention the backend's Go types.
func describeJSONError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("the body must be a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the body is truncated JSON")
	case errors.As(err, &syntax):
		return fmt.Errorf("the body is not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		return errors.New("the body must be a JSON object")
	}
	return errors.New("the body is not a valid item")
}

func (a *App) openAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(a.openAPIDoc)))
	_, _ = w.Write(a.openAPIDoc)
}
