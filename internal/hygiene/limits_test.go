package hygiene

import (
	"strings"
	"testing"
)

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		want   []string // substrings of the error, one per problem; none when valid
	}{
		{name: "zero is the defaults", limits: Limits{}},
		{name: "everything off", limits: Limits{MaxURLBytes: -1, MaxHeaders: -1, MaxQueryParams: -1, MaxCookies: -1,
			MaxBodyBytes: -1, MaxJSONDepth: -1, MaxFormFields: -1}},
		{name: "caps and types", limits: Limits{
			BodyCaps:     map[string]int64{"application/json": 1 << 20, "image/*": 50 << 20, "video/mp4": -1},
			ContentTypes: []string{"application/json", "image/*", "Video/MP4"},
		}},
		{name: "every problem at once",
			limits: Limits{
				MaxURLBytes: -2, MaxHeaders: -3, MaxQueryParams: -4, MaxCookies: -5, MaxBodyBytes: -6,
				MaxJSONDepth: -7, MaxFormFields: -8,
				BodyCaps: map[string]int64{
					"json":             1,
					"*/*":              1,
					"text/plain; q=1":  1,
					"Application/JSON": 1,
					"application/json": 2,
					"image/*":          0,
					"font/*":           -9,
				},
				ContentTypes: []string{"text/plain", "*/*", "TEXT/PLAIN", "*/json", "a/b c"},
			},
			want: []string{
				"max URL bytes is -2", "max headers is -3", "max query params is -4", "max cookies is -5",
				"max body bytes is -6", "max JSON depth is -7", "max form fields is -8",
				`body cap for "json": not a media type`,
				`body cap for "*/*": use max body bytes`,
				`body cap for "text/plain; q=1": parameters are not allowed`,
				`body caps for "Application/JSON" and "application/json" name the same type`,
				`body cap for "image/*" is 0`,
				`body cap for "font/*" is -9`,
				`content type "*/*": leave the list empty`,
				`content types "text/plain" and "TEXT/PLAIN" are the same`,
				`content type "*/json": a wildcard type needs a wildcard subtype`,
				`content type "a/b c": not a media type`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.limits.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := Compile(tt.limits); err != nil {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted invalid limits")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if n := strings.Count(msg, "\n") + 1; n != len(tt.want) {
				t.Errorf("%d problems reported, want %d:\n%s", n, len(tt.want), msg)
			}
			if _, cerr := Compile(tt.limits); cerr == nil || !strings.HasPrefix(cerr.Error(), "request hygiene limits: ") {
				t.Errorf("Compile error %v", cerr)
			}
		})
	}
}

func TestCompileDefaults(t *testing.T) {
	c := mustCompile(t, Limits{})
	got := []int64{int64(c.maxURL), int64(c.maxHeaders), int64(c.maxParams), int64(c.maxCookies), c.maxBody, int64(c.maxJSONDepth), int64(c.maxFormFields)}
	want := []int64{8 << 10, 100, 256, 64, 10 << 20, 64, 1000}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("default %d is %d, want %d", i, got[i], want[i])
		}
	}
	if c.encodedSlash || len(c.allowed) != 0 || len(c.caps) != 0 {
		t.Errorf("defaults %+v", c)
	}
	c = mustCompile(t, Limits{BodyCaps: map[string]int64{"image/*": 5, "image/png": 6, "Text/*": 7}})
	if c.bodyCap("image", "png") != 6 || c.bodyCap("image", "gif") != 5 || c.bodyCap("text", "x") != 7 || c.bodyCap("", "") != DefaultMaxBodyBytes {
		t.Errorf("caps %+v", c.caps)
	}
}
