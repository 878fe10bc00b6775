package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/moatgw/moat/internal/store"
)

// SecretName is the store secret (store.Secrets) the checkpoint signing
// key is derived from: its 32 bytes are the Ed25519 seed. Every instance
// sharing a database derives the same key.
const SecretName = "audit.checkpoint-seed"

// signDomain starts every signed checkpoint message, so the signature
// cannot be taken for one over anything else.
const signDomain = "moat audit checkpoint v1\x00"

// Signer signs checkpoints with an Ed25519 key. It is safe for concurrent
// use.
type Signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	id   string
}

// NewSigner returns a Signer for priv.
func NewSigner(priv ed25519.PrivateKey) *Signer {
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, pub: pub, id: KeyID(pub)}
}

// LoadSigner returns the Signer of the key derived from the SecretName
// secret, creating the secret on first use. Instances racing to create it
// end up with the same key (see store.Secrets.GetOrCreate).
func LoadSigner(ctx context.Context, secrets store.Secrets) (*Signer, error) {
	seed, err := secrets.GetOrCreate(ctx, SecretName, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("loading audit checkpoint key: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("loading audit checkpoint key: secret %s holds %d bytes, want %d", SecretName, len(seed), ed25519.SeedSize)
	}
	return NewSigner(ed25519.NewKeyFromSeed(seed)), nil
}

// Public returns the public key that verifies the Signer's checkpoints.
func (s *Signer) Public() ed25519.PublicKey { return s.pub }

// KeyID returns the id of the Signer's key, as checkpoints name it.
func (s *Signer) KeyID() string { return s.id }

// KeyID is the id checkpoints give a public key: the first 8 bytes of its
// SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Checkpoint is what a checkpoint record states, under the signature of
// the log's key: that the record at Covers has hash Hash and, for a
// checkpoint left by Prune, that the records below PrunedBefore were
// deleted and the first record kept follows a record with hash Anchor.
//
// In JSON: moat.checkpoint.covers, moat.checkpoint.hash (hex),
// moat.checkpoint.pruned_before and moat.checkpoint.anchor (hex) when
// pruned, moat.checkpoint.key (KeyID) and moat.checkpoint.signature (hex).
type Checkpoint struct {
	Seq          int64 // the checkpoint record's own sequence number
	Time         time.Time
	Covers       int64  // the record signed: always Seq-1
	Hash         []byte // its hash
	PrunedBefore int64  // 0 unless left by Prune
	Anchor       []byte // the hash of record PrunedBefore-1, when pruned
	KeyID        string
	Signature    []byte
}

// message is what the signature covers: the domain, then Seq, Time (unix
// microseconds), Covers and PrunedBefore as 8-byte big-endian numbers, then
// Hash and Anchor.
func (c *Checkpoint) message() []byte {
	m := make([]byte, 0, len(signDomain)+32+len(c.Hash)+len(c.Anchor))
	m = append(m, signDomain...)
	m = binary.BigEndian.AppendUint64(m, uint64(c.Seq))
	m = binary.BigEndian.AppendUint64(m, uint64(c.Time.UnixMicro()))
	m = binary.BigEndian.AppendUint64(m, uint64(c.Covers))
	m = binary.BigEndian.AppendUint64(m, uint64(c.PrunedBefore))
	m = append(m, c.Hash...)
	return append(m, c.Anchor...)
}

// Verify reports whether c is signed by pub.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) bool {
	return c.KeyID == KeyID(pub) && ed25519.Verify(pub, c.message(), c.Signature)
}

// encode returns the checkpoint's canonical JSON.
func (c *Checkpoint) encode() []byte {
	d := make(doc, 0, 12)
	d.str("@timestamp", formatTime(c.Time))
	d.int("event.sequence", c.Seq)
	d.str("event.kind", ecsState)
	d.str("event.action", KindCheckpoint)
	d.int("moat.checkpoint.covers", c.Covers)
	d.str("moat.checkpoint.hash", hex.EncodeToString(c.Hash))
	if c.PrunedBefore > 0 {
		d.int("moat.checkpoint.pruned_before", c.PrunedBefore)
		d.str("moat.checkpoint.anchor", hex.EncodeToString(c.Anchor))
	}
	d.str("moat.checkpoint.key", c.KeyID)
	d.str("moat.checkpoint.signature", hex.EncodeToString(c.Signature))
	return d.bytes()
}

// record signs a checkpoint at seq, after the record with hash prev, and
// returns it as a chained record.
func (s *Signer) record(seq int64, at time.Time, prev []byte, prunedBefore int64, anchor []byte) *store.AuditRecord {
	at = at.UTC().Truncate(time.Microsecond)
	c := &Checkpoint{Seq: seq, Time: at, Covers: seq - 1, Hash: prev, PrunedBefore: prunedBefore, Anchor: anchor, KeyID: s.id}
	c.Signature = ed25519.Sign(s.priv, c.message())
	data := c.encode()
	return &store.AuditRecord{Seq: seq, Time: at, Kind: KindCheckpoint, Data: data, PrevHash: prev, Hash: Hash(prev, data)}
}

// header is the part of a record Verify reads: its place and time, and
// the checkpoint fields.
type header struct {
	Timestamp    string `json:"@timestamp"`
	Sequence     *int64 `json:"event.sequence"`
	Action       string `json:"event.action"`
	Covers       int64  `json:"moat.checkpoint.covers"`
	Hash         string `json:"moat.checkpoint.hash"`
	PrunedBefore int64  `json:"moat.checkpoint.pruned_before"`
	Anchor       string `json:"moat.checkpoint.anchor"`
	Key          string `json:"moat.checkpoint.key"`
	Signature    string `json:"moat.checkpoint.signature"`
}

func parseHeader(data []byte) (*header, time.Time, error) {
	var h header
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, time.Time{}, err
	}
	if h.Sequence == nil {
		return nil, time.Time{}, errors.New("no event.sequence")
	}
	at, err := time.Parse(TimeFormat, h.Timestamp)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("bad @timestamp: %w", err)
	}
	return &h, at, nil
}

// checkpoint returns the checkpoint a header states.
func (h *header) checkpoint(at time.Time) (*Checkpoint, error) {
	c := &Checkpoint{Seq: *h.Sequence, Time: at, Covers: h.Covers, PrunedBefore: h.PrunedBefore, KeyID: h.Key}
	var err error
	if c.Hash, err = hex.DecodeString(h.Hash); err != nil {
		return nil, fmt.Errorf("bad checkpoint hash: %w", err)
	}
	if c.Anchor, err = hex.DecodeString(h.Anchor); err != nil {
		return nil, fmt.Errorf("bad checkpoint anchor: %w", err)
	}
	if c.Signature, err = hex.DecodeString(h.Signature); err != nil {
		return nil, fmt.Errorf("bad checkpoint signature: %w", err)
	}
	if len(c.Anchor) == 0 {
		c.Anchor = nil
	}
	if len(c.Hash) == 0 {
		c.Hash = nil
	}
	return c, nil
}
