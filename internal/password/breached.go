package password

import (
	"compress/gzip"
	"embed"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
)

// dataFS holds the breached-password list: canonical entries (NFKC, lower
// case, at least 8 code points), sorted bytewise, one a line, gzipped. It is
// built by internal/genlist; data/SOURCE.md says from what.
//
//go:embed data/breached.txt.gz
var dataFS embed.FS

const breachedPath = "data/breached.txt.gz"

// maxListBytes bounds the decompressed list, so that a corrupt build cannot
// make the first Check allocate without limit.
const maxListBytes = 16 << 20

// breachedList loads the embedded list once, on first use. It is immutable
// after loading and safe for concurrent use.
var breachedList = sync.OnceValues(func() (*wordList, error) {
	return loadWordList(dataFS, breachedPath)
})

// A wordList is a sorted set of strings packed in one string: entry i runs
// from the end of entry i-1 (plus its newline) to ends[i]. It costs the bytes
// of the entries plus 4 bytes each, against 16 for a []string header and far
// more for a map.
type wordList struct {
	blob string
	ends []uint32
}

func loadWordList(fsys embed.FS, name string) (*wordList, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", name, err)
	}
	defer f.Close()
	var sb strings.Builder
	sb.Grow(sizeHint(f))
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", name, err)
	}
	n, err := io.Copy(&sb, io.LimitReader(zr, maxListBytes+1))
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", name, err)
	}
	if n > maxListBytes {
		return nil, fmt.Errorf("loading %s: more than %d bytes", name, maxListBytes)
	}
	return newWordList(sb.String())
}

// sizeHint reads the decompressed size that a gzip file records in its last
// four bytes, so that the list is read into a buffer of the right size. It
// is only a hint: 0 when unknown, never above maxListBytes.
func sizeHint(f fs.File) int {
	ra, ok := f.(io.ReaderAt)
	st, err := f.Stat()
	if !ok || err != nil || st.Size() < 18 {
		return 0
	}
	var b [4]byte
	if _, err := ra.ReadAt(b[:], st.Size()-4); err != nil {
		return 0
	}
	return int(min(binary.LittleEndian.Uint32(b[:]), maxListBytes))
}

// newWordList indexes blob, which must hold strictly increasing entries,
// each ended by a newline.
func newWordList(blob string) (*wordList, error) {
	if blob != "" && !strings.HasSuffix(blob, "\n") {
		return nil, fmt.Errorf("word list: last entry has no newline")
	}
	w := &wordList{blob: blob, ends: make([]uint32, 0, strings.Count(blob, "\n"))}
	prev := ""
	for start := 0; start < len(blob); {
		end := start + strings.IndexByte(blob[start:], '\n')
		entry := blob[start:end]
		if len(w.ends) > 0 && entry <= prev {
			return nil, fmt.Errorf("word list: entry %d is out of order or repeated", len(w.ends))
		}
		w.ends = append(w.ends, uint32(end))
		prev = entry
		start = end + 1
	}
	return w, nil
}

// count returns the number of entries.
func (w *wordList) count() int { return len(w.ends) }

// at returns entry i.
func (w *wordList) at(i int) string {
	start := 0
	if i > 0 {
		start = int(w.ends[i-1]) + 1
	}
	return w.blob[start:w.ends[i]]
}

// contains reports whether s is an entry, by binary search.
func (w *wordList) contains(s string) bool {
	i := sort.Search(len(w.ends), func(i int) bool { return w.at(i) >= s })
	return i < len(w.ends) && w.at(i) == s
}

// size is the memory the list holds, in bytes.
func (w *wordList) size() int { return len(w.blob) + 4*cap(w.ends) }
