package password

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicyCheck(t *testing.T) {
	p := DefaultPolicy()
	tests := []struct {
		name     string
		password string
		username string
		want     Reason // "" for accepted
		limit    int
	}{
		{"long passphrase", "correct horse battery staple 7 lighthouse", "alice", "", 0},
		{"exactly the minimum", "tq8#vz!Lm2pR", "alice", "", 0},
		{"exactly the maximum", strings.Repeat("ab", 64), "alice", "", 0},
		{"spaces and symbols allowed", "  ~ my  öwn \t words ~  ", "alice", "", 0},
		{"too short", "tq8#vz!Lm2p", "alice", ReasonTooShort, 12},
		{"empty", "", "alice", ReasonTooShort, 12},
		{"too long", strings.Repeat("ab", 64) + "c", "alice", ReasonTooLong, 128},
		{"over the byte limit", strings.Repeat("ab", MaxPasswordBytes), "alice", ReasonTooLong, 128},
		// 11 emoji are 11 characters (44 bytes): too short; 12 are enough.
		{"emoji count as one", "🐴🔋📎🦦🌊🏠🌙🍋🎻🧭🪁", "alice", ReasonTooShort, 12},
		{"twelve emoji", "🐴🔋📎🦦🌊🏠🌙🍋🎻🧭🪁🐝", "alice", "", 0},
		// NFKC turns the 6 ligatures into 12 letters.
		{"length after NFKC", "\ufb01\ufb02\ufb01\ufb02\ufb01\ufb02 lake", "alice", "", 0},
		{"repeated letter", "aaaaaaaaaaaaaa", "alice", ReasonRepetitive, 0},
		{"repeated letter, mixed case", "aAaAaAaAaAaA", "alice", ReasonRepetitive, 0},
		{"repeated emoji", strings.Repeat("🦦", 12), "alice", ReasonRepetitive, 0},
		{"equals user name", "lighthouse.keeper", "lighthouse.keeper", ReasonContainsUsername, 0},
		{"contains user name", "my name is alice and I sail", "alice", ReasonContainsUsername, 0},
		{"contains user name, other case", "my name is ALICE and I sail", "Alice", ReasonContainsUsername, 0},
		{"contains full-width user name", "my name is ａｌｉｃｅ and I sail", "alice", ReasonContainsUsername, 0},
		{"short user name ignored", "my name is al and I sail", "al", "", 0},
		{"empty user name ignored", "my name is al and I sail", "", "", 0},
		{"breached", "password1234", "alice", ReasonBreached, 0},
		{"breached, other case", "PassWord1234", "alice", ReasonBreached, 0},
		{"breached, surrounding space", " qwertyuiop123 ", "alice", ReasonBreached, 0},
		{"breached, keyboard walk", "1qaz2wsx3edc", "alice", ReasonBreached, 0},
		{"breached, full-width", "ｐａｓｓｗｏｒｄ１２３４", "alice", ReasonBreached, 0},
		{"near a breached entry", "iloveyou123!", "bob", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Check(tt.password, tt.username)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Check = %v, want a *PolicyError %s", err, tt.want)
			}
			if pe.Reason != tt.want || pe.Limit != tt.limit {
				t.Errorf("Check = %+v, want reason %s limit %d", pe, tt.want, tt.limit)
			}
			msg := err.Error()
			if msg == "" || (tt.password != "" && strings.Contains(msg, tt.password)) {
				t.Errorf("message %q is empty or shows the password", msg)
			}
		})
	}
}

func TestPolicyCheckMinimumEight(t *testing.T) {
	// With the NIST floor of 8, 8-character breached entries are caught.
	p := Policy{MinLength: 8, MaxLength: 64}
	if err := p.Check("sunshine", ""); !isReason(err, ReasonBreached) {
		t.Errorf("Check(sunshine) = %v, want breached", err)
	}
	if err := p.Check("tq8#vz!L", ""); err != nil {
		t.Errorf("Check(random 8) = %v, want nil", err)
	}
}

func isReason(err error, r Reason) bool {
	var pe *PolicyError
	return errors.As(err, &pe) && pe.Reason == r
}

func TestPolicyErrorMessages(t *testing.T) {
	tests := []struct {
		err  *PolicyError
		want string
	}{
		{&PolicyError{Reason: ReasonTooShort, Limit: 12}, "password must be at least 12 characters long"},
		{&PolicyError{Reason: ReasonTooLong, Limit: 128}, "password must be at most 128 characters long"},
		{&PolicyError{Reason: ReasonRepetitive}, "password must not be one character repeated"},
		{&PolicyError{Reason: ReasonContainsUsername}, "password must not contain the user name"},
		{&PolicyError{Reason: ReasonBreached}, "password is too common: it appears in lists of passwords exposed in data breaches"},
	}
	for _, tt := range tests {
		t.Run(string(tt.err.Reason), func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		ok   bool
	}{
		{"default", DefaultPolicy(), true},
		{"NIST floor", Policy{MinLength: 8, MaxLength: 64}, true},
		{"largest", Policy{MinLength: 8, MaxLength: 1024}, true},
		{"zero", Policy{}, false},
		{"minimum under 8", Policy{MinLength: 7, MaxLength: 128}, false},
		{"maximum under 64", Policy{MinLength: 12, MaxLength: 63}, false},
		{"maximum over 1024", Policy{MinLength: 12, MaxLength: 1025}, false},
		{"minimum above maximum", Policy{MinLength: 100, MaxLength: 64}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%+v) = %v, want ok %v", tt.p, err, tt.ok)
			}
			if !tt.ok {
				// Check refuses to work with an invalid policy: fail closed.
				cerr := tt.p.Check("correct horse battery staple", "")
				var pe *PolicyError
				if cerr == nil || errors.As(cerr, &pe) {
					t.Errorf("Check with invalid policy = %v, want a non-policy error", cerr)
				}
			}
		})
	}
}

func BenchmarkPolicyCheck(b *testing.B) {
	p := DefaultPolicy()
	if _, err := breachedList(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := p.Check("correct horse battery staple", "alice"); err != nil {
			b.Fatal(err)
		}
	}
}
