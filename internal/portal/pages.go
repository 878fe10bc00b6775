package portal

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/moatgw/moat/internal/headers"
	"github.com/moatgw/moat/internal/problem"
	"github.com/moatgw/moat/internal/request"
)

//go:embed templates/*.html
var templateFS embed.FS

// The pages Render knows, with the type of data each takes.
const (
	PageLogin         = "login"          // LoginData
	PageSecondFactor  = "second_factor"  // SecondFactorData
	PageSetPassword   = "set_password"   // SetPasswordData
	PageEnrollTOTP    = "enroll_totp"    // EnrollTOTPData
	PageRecoveryCodes = "recovery_codes" // RecoveryCodesData
	PagePasskeys      = "passkeys"       // PasskeysData
	PageAccount       = "account"        // AccountData
	PageLoggedOut     = "logged_out"     // LoggedOutData
	PageNotice        = "notice"         // NoticeData
	PageStepUp        = "step_up"        // StepUpData
)

// pageSpecs lists every page: its data type, and whether it needs the wide
// layout (lists of items rather than one short form).
var pageSpecs = map[string]struct {
	data reflect.Type
	wide bool
}{
	PageLogin:         {reflect.TypeFor[LoginData](), false},
	PageSecondFactor:  {reflect.TypeFor[SecondFactorData](), false},
	PageSetPassword:   {reflect.TypeFor[SetPasswordData](), false},
	PageEnrollTOTP:    {reflect.TypeFor[EnrollTOTPData](), false},
	PageRecoveryCodes: {reflect.TypeFor[RecoveryCodesData](), false},
	PagePasskeys:      {reflect.TypeFor[PasskeysData](), true},
	PageAccount:       {reflect.TypeFor[AccountData](), true},
	PageLoggedOut:     {reflect.TypeFor[LoggedOutData](), false},
	PageNotice:        {reflect.TypeFor[NoticeData](), false},
	PageStepUp:        {reflect.TypeFor[StepUpData](), false},
}

// maxPageBytes bounds a rendered page; the largest real page is a few KB.
const maxPageBytes = 1 << 20

// Pages renders the portal's pages. It is immutable after NewPages and safe
// for concurrent use.
type Pages struct {
	log   *slog.Logger
	pages map[string]*template.Template
	wide  map[string]bool
}

// layoutData is what the layout template sees; the page's own templates
// see Page.
type layoutData struct {
	Page      any
	Wide      bool
	RequestID string
}

// NewPages parses the embedded templates. An error means the binary was
// built with broken templates.
func NewPages(log *slog.Logger) (*Pages, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	assets, err := loadAssets()
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"asset":  func(name string) (string, error) { return assets.url(name) },
		"group4": group4,
		"when":   when,
		"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"plural": plural,
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("parsing portal layout: %w", err)
	}
	p := &Pages{
		log:   log.With("component", "portal"),
		pages: make(map[string]*template.Template, len(pageSpecs)),
		wide:  make(map[string]bool, len(pageSpecs)),
	}
	for name, spec := range pageSpecs {
		t, err := base.Clone()
		if err != nil {
			return nil, fmt.Errorf("parsing portal page %s: %w", name, err)
		}
		if t, err = t.ParseFS(templateFS, "templates/"+name+".html"); err != nil {
			return nil, fmt.Errorf("parsing portal page %s: %w", name, err)
		}
		p.pages[name] = t
		p.wide[name] = spec.wide
	}
	return p, nil
}

// Render writes page, filled in with data, as the response with the given
// status. data must be the page's data type (see the Page constants), or a
// pointer to it.
//
// The response is marked no-store (pages carry CSRF tokens, and some carry
// secrets such as a TOTP key or recovery codes) and carries
// headers.OwnPagesCSP and X-Frame-Options: DENY. The footer shows the
// request id from the request's context.
//
// A page that cannot be rendered (an unknown page, data of the wrong type, a
// template error) is logged and answered with a plain 500 page: nothing of a
// half-rendered page is sent.
func (p *Pages) Render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	reqID := ""
	if info := request.From(r.Context()); info != nil {
		reqID = info.ID
	}
	body, err := p.render(page, data, reqID)
	if err != nil {
		p.log.Error("rendering portal page", "page", page, "request_id", reqID, "err", err)
		problem.Write(w, r, reqID, &problem.Error{Status: http.StatusInternalServerError, Err: err})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", headers.OwnPagesCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func (p *Pages) render(page string, data any, reqID string) ([]byte, error) {
	t, ok := p.pages[page]
	if !ok {
		return nil, fmt.Errorf("unknown page %q", page)
	}
	want := pageSpecs[page].data
	if got := reflect.TypeOf(data); got != want && got != reflect.PointerTo(want) {
		return nil, fmt.Errorf("page %s takes %v, got %v", page, want, got)
	}
	if v := reflect.ValueOf(data); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("page %s: nil data", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", layoutData{Page: data, Wide: p.wide[page], RequestID: reqID}); err != nil {
		return nil, fmt.Errorf("executing template: %w", err)
	}
	if buf.Len() > maxPageBytes {
		return nil, fmt.Errorf("page is %d bytes, limit %d", buf.Len(), maxPageBytes)
	}
	return buf.Bytes(), nil
}

// group4 writes a base32 key in groups of four characters, ignoring any
// spacing it already has.
func group4(key string) string {
	key = strings.Join(strings.Fields(key), "")
	var b strings.Builder
	for i := 0; i < len(key); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(key[i:min(i+4, len(key))])
	}
	return b.String()
}

// when formats a time for people, in UTC, which the page says. The
// machine-readable form goes into the datetime attribute of <time>.
func when(t time.Time) string {
	return t.UTC().Format("2 Jan 2006, 15:04 UTC")
}

// plural returns singular when n is 1 and pluralForm otherwise.
func plural(n int, singular, pluralForm string) string {
	if n == 1 {
		return singular
	}
	return pluralForm
}
