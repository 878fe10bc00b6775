package openapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkRouterLookup is one lookup in a router of 1,000 path templates,
// over a mix of literal and templated paths.
func BenchmarkRouterLookup(b *testing.B) {
	rt := buildRouter(b, generatedTemplates(1000)...)
	var paths []string
	for i := 0; i < 166; i += 7 {
		r := fmt.Sprintf("/api/v%d/resource%d", i%3+1, i)
		paths = append(paths, r, r+"/12345", r+"/12345/items/77", r+"/abc/export.csv", r+"/search")
	}
	var m match
	for _, p := range paths {
		if !rt.lookup(p, &m) {
			b.Fatalf("%s not found", p)
		}
	}
	b.ReportAllocs()
	cpu := processCPU()
	i := 0
	for b.Loop() {
		rt.lookup(paths[i%len(paths)], &m)
		i++
	}
	reportCPU(b, cpu)
}

// reportCPU reports the process's CPU time per iteration since start
// (cpu-ns/op), steadier than wall time on a busy shared machine.
func reportCPU(b *testing.B, start time.Duration) {
	if end := processCPU(); end > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkCheck is a full Check of a valid POST with a small JSON body,
// including putting a fresh body on the request each time.
func BenchmarkCheck(b *testing.B) {
	benchCheck(b, "testdata/petstore.yaml", "/v1/pets")
}

// BenchmarkCheck31 is BenchmarkCheck on an OpenAPI 3.1 document, which
// kin-openapi validates as JSON Schema 2020-12.
func BenchmarkCheck31(b *testing.B) {
	benchCheck(b, "testdata/petstore31.yaml", "/pets")
}

// BenchmarkCheck31Keywords is BenchmarkCheck31 on an operation whose
// schema uses a JSON Schema 2020-12 keyword (const): kin-openapi then
// compiles the schema for each validation.
func BenchmarkCheck31Keywords(b *testing.B) {
	benchCheckBody(b, "testdata/petstore31.yaml", "/labels", `{"label":"a","code":"A1"}`)
}

func benchCheck(b *testing.B, file, path string) {
	benchCheckBody(b, file, path, `{"name":"Rex","kind":"dog"}`)
}

func benchCheckBody(b *testing.B, file, path, reqBody string) {
	v, err := Load(file, Options{})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(reqBody)
	r := httptest.NewRequest("POST", path, nil)
	r.Header.Set("Content-Type", "application/json")
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		if res := v.Check(r); !res.OK() {
			b.Fatal(res.Problem)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkCheckGet is a full Check of a GET with path, query and header
// parameters.
func BenchmarkCheckGet(b *testing.B) {
	v := mustLoad(b, Options{})
	r := httptest.NewRequest("GET", "/v1/pets?limit=10&tags=a&tags=b&status=sold", nil)
	r.Header.Set("X-Api-Version", "2")
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		if res := v.Check(r); !res.OK() {
			b.Fatal(res.Problem)
		}
	}
	reportCPU(b, cpu)
}
