package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ajarhq/ajar/internal/control"
	"github.com/ajarhq/ajar/internal/httpio"
	"github.com/ajarhq/ajar/internal/jit"
	"github.com/ajarhq/ajar/internal/sso"
)

// The tests below hold openapi.json to the code: every route registered in
// routes.go must be documented with the status codes its handler writes,
// every request body must list exactly the fields the handler decodes, and
// every schema must list exactly the JSON fields of its Go type.

// schemaTypes ties component schemas to the Go types they describe.
// Request types are decoded with unknown fields refused; response types
// are what handlers encode.
var schemaTypes = map[string]struct {
	typ     reflect.Type
	request bool // decoded from a request body
	shared  bool // both decoded and encoded: "required" is not derivable
}{
	"AccessRequest":  {typ: reflect.TypeFor[jit.AccessRequest](), request: true},
	"VMRequest":      {typ: reflect.TypeFor[jit.VMRequest](), request: true},
	"PortRequest":    {typ: reflect.TypeFor[jit.PortRequest](), request: true},
	"PortRule":       {typ: reflect.TypeFor[jit.PortRule](), request: true, shared: true},
	"NewVM":          {typ: reflect.TypeFor[jit.NewVM](), request: true},
	"PolicyInput":    {typ: reflect.TypeFor[PolicyInput](), request: true},
	"NewUser":        {typ: reflect.TypeFor[jit.NewUser](), request: true},
	"NewToken":       {typ: reflect.TypeFor[jit.NewToken](), request: true},
	"NewEnrollToken": {typ: reflect.TypeFor[jit.NewEnrollToken](), request: true},
	"Enrollment":     {typ: reflect.TypeFor[jit.Enrollment](), request: true},
	"Report":         {typ: reflect.TypeFor[jit.Report](), request: true, shared: true},
	"Socket":         {typ: reflect.TypeFor[jit.Socket](), request: true, shared: true},
	"AgentEvent":     {typ: reflect.TypeFor[jit.AgentEvent](), request: true},
	"Approval":       {typ: reflect.TypeFor[jit.Approval](), request: true, shared: true},
	"AutoApproval":   {typ: reflect.TypeFor[jit.AutoApproval](), request: true, shared: true},
	"DecisionInput":  {typ: reflect.TypeFor[DecisionInput](), request: true},
	"ArchiveConfirm": {typ: reflect.TypeFor[jit.ArchiveConfirm](), request: true},
	"Archived":       {typ: reflect.TypeFor[jit.Archived]()},
	"NewWebhook":     {typ: reflect.TypeFor[jit.NewWebhook](), request: true},

	"Error":            {typ: reflect.TypeFor[httpio.ErrorBody]()},
	"Anchor":           {typ: reflect.TypeFor[jit.Anchor]()},
	"CloudSyncSummary": {typ: reflect.TypeFor[control.CloudSyncSummary]()},
	"CloudScopeSync":   {typ: reflect.TypeFor[control.CloudScopeSync]()},
	"Whoami":           {typ: reflect.TypeFor[Whoami]()},
	"Group":            {typ: reflect.TypeFor[jit.Group]()},
	"VM":               {typ: reflect.TypeFor[jit.VM]()},
	"VMView":           {typ: reflect.TypeFor[jit.VMView]()},
	"Classification":   {typ: reflect.TypeFor[jit.Classification]()},
	"Policy":           {typ: reflect.TypeFor[jit.Policy]()},
	"Recommendation":   {typ: reflect.TypeFor[jit.Recommendation]()},
	"Request":          {typ: reflect.TypeFor[jit.Request]()},
	"Grant":            {typ: reflect.TypeFor[jit.Grant]()},
	"Event":            {typ: reflect.TypeFor[jit.Event]()},
	"Verification":     {typ: reflect.TypeFor[jit.Verification]()},
	"User":             {typ: reflect.TypeFor[jit.User]()},
	"Token":            {typ: reflect.TypeFor[jit.Token]()},
	"CreatedToken":     {typ: reflect.TypeFor[jit.CreatedToken]()},
	"Enrolled":         {typ: reflect.TypeFor[jit.Enrolled]()},
	"RoleBinding":      {typ: reflect.TypeFor[jit.RoleBinding]()},
	"ClaimMapping":     {typ: reflect.TypeFor[jit.ClaimMapping]()},
	"Webhook":          {typ: reflect.TypeFor[jit.Webhook]()},
	"CreatedWebhook":   {typ: reflect.TypeFor[jit.CreatedWebhook]()},
	"Delivery":         {typ: reflect.TypeFor[jit.Delivery]()},
	"DesiredState":     {typ: reflect.TypeFor[jit.DesiredState]()},
	"PortLock":         {typ: reflect.TypeFor[jit.PortLock]()},
	"GrantRule":        {typ: reflect.TypeFor[jit.GrantRule]()},
	"Decision":         {typ: reflect.TypeFor[jit.Decision]()},
}

// namedBodyTypes resolves the named types handlers decode request bodies
// into, as written in handlers.go.
var namedBodyTypes = map[string]reflect.Type{
	"jit.NewVM":          reflect.TypeFor[jit.NewVM](),
	"PolicyInput":        reflect.TypeFor[PolicyInput](),
	"jit.AccessRequest":  reflect.TypeFor[jit.AccessRequest](),
	"jit.NewUser":        reflect.TypeFor[jit.NewUser](),
	"jit.NewToken":       reflect.TypeFor[jit.NewToken](),
	"jit.NewEnrollToken": reflect.TypeFor[jit.NewEnrollToken](),
	"jit.Enrollment":     reflect.TypeFor[jit.Enrollment](),
	"jit.Report":         reflect.TypeFor[jit.Report](),
	"jit.Watch":          reflect.TypeFor[jit.Watch](),
	"jit.AgentEvent":     reflect.TypeFor[jit.AgentEvent](),
	"DecisionInput":      reflect.TypeFor[DecisionInput](),
	"sso.Device":         reflect.TypeFor[sso.Device](),
	"jit.ArchiveConfirm": reflect.TypeFor[jit.ArchiveConfirm](),
	"jit.NewWebhook":     reflect.TypeFor[jit.NewWebhook](),
}

type apiDoc = map[string]any

func loadDoc(t *testing.T) apiDoc {
	t.Helper()
	if err := checkDuplicateKeys(openapiDoc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var doc apiDoc
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

// checkDuplicateKeys fails on an object with a key twice, which
// encoding/json would silently accept.
func checkDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					return errors.New("duplicate key " + strconv.Quote(key) + " at " + path)
				}
				seen[key] = true
				if err := walk(path + "/" + key); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(path + "/" + strconv.Itoa(i)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(""); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the document")
	}
	return nil
}

// resolvePointer resolves a local reference such as
// "#/components/schemas/VM".
func resolvePointer(doc apiDoc, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, false
	}
	var cur any = doc
	if p == "" {
		return cur, true
	}
	if !strings.HasPrefix(p, "/") {
		return nil, false
	}
	for _, part := range strings.Split(p[1:], "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[part]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// deref follows $ref until it reaches an object without one.
func deref(t *testing.T, doc apiDoc, v any) map[string]any {
	t.Helper()
	for range 10 {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("expected an object, got %T", v)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		if v, ok = resolvePointer(doc, ref); !ok {
			t.Fatalf("unresolved $ref %s", ref)
		}
	}
	t.Fatal("$ref chain too long")
	return nil
}

// schemaProps merges the properties and required lists of a schema and
// its allOf parts.
func schemaProps(t *testing.T, doc apiDoc, v any) (props map[string]any, required map[string]bool) {
	t.Helper()
	props, required = map[string]any{}, map[string]bool{}
	var add func(v any)
	add = func(v any) {
		s := deref(t, doc, v)
		for k, p := range mapOf(s["properties"]) {
			props[k] = p
		}
		for _, r := range listOf(s["required"]) {
			required[r.(string)] = true
		}
		for _, part := range listOf(s["allOf"]) {
			add(part)
		}
	}
	add(v)
	return props, required
}

func mapOf(v any) map[string]any { m, _ := v.(map[string]any); return m }
func listOf(v any) []any         { l, _ := v.([]any); return l }

func schemaRef(name string) map[string]any {
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

// route is one pattern registered on the server's mux.
type route struct {
	method, path string
	handler      string         // method name, or "func literal"
	body         *ast.BlockStmt // the handler's body
	pos          token.Position
}

// parsePackage parses the package's non-test sources.
func parsePackage(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return fset, files
}

// registeredRoutes reads the patterns the package registers: those of
// routes() in routes.go and any registered elsewhere (such as
// HandleAzureSync). A pattern that is not a string literal is an error in
// routes(); elsewhere (Handle, which passes its caller's pattern through)
// it is not the API's.
func registeredRoutes(t *testing.T, fset *token.FileSet, files []*ast.File) []route {
	t.Helper()
	methods := map[string]*ast.FuncDecl{}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
				methods[fd.Name.Name] = fd
			}
		}
	}
	var routes []route
	sawRoutes := false
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			inRoutes := fd.Name.Name == "routes" && filepath.Base(fset.Position(f.Pos()).Filename) == "routes.go"
			sawRoutes = sawRoutes || inRoutes
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
					return true
				}
				pos := fset.Position(call.Pos())
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					if inRoutes {
						t.Errorf("%s: route pattern is not a string literal; this test cannot check it", pos)
					}
					return true
				}
				pattern, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				r := route{pos: pos}
				r.handler, r.body = handlerOf(call.Args[1], methods)
				if m, p, ok := strings.Cut(pattern, " "); ok {
					r.method, r.path = m, strings.TrimSpace(p)
				} else {
					r.path = pattern
				}
				routes = append(routes, r)
				return true
			})
		}
	}
	if !sawRoutes || len(routes) < 10 {
		t.Fatalf("found only %d routes (func routes in routes.go: %v); has its shape changed?", len(routes), sawRoutes)
	}
	return routes
}

// handlerOf returns the handler of s.api(h) or h, where h is s.Method or
// a func literal.
func handlerOf(e ast.Expr, methods map[string]*ast.FuncDecl) (string, *ast.BlockStmt) {
	if c, ok := e.(*ast.CallExpr); ok && len(c.Args) == 1 {
		e = c.Args[0]
	}
	switch h := e.(type) {
	case *ast.SelectorExpr:
		if fd := methods[h.Sel.Name]; fd != nil {
			return h.Sel.Name, fd.Body
		}
		return h.Sel.Name, nil
	case *ast.FuncLit:
		return "func literal", h.Body
	}
	return "", nil
}

// documented reports whether a route belongs in the OpenAPI document, and
// its OpenAPI path.
func documented(r route) (string, bool) {
	if r.path != "/healthz" && !strings.HasPrefix(r.path, "/api/v1/") {
		return "", false
	}
	p := strings.TrimSuffix(r.path, "{$}")
	p = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)\.\.\.\}`).ReplaceAllString(p, "{$1}")
	return p, true
}

var pathParamRE = regexp.MustCompile(`\{([^}]+)\}`)

func TestOpenAPIDocument(t *testing.T) {
	doc := loadDoc(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", doc["openapi"])
	}
	info := mapOf(doc["info"])
	if info["title"] == nil || info["version"] == nil {
		t.Errorf("info needs title and version: %v", info)
	}
	if len(mapOf(doc["paths"])) == 0 {
		t.Fatal("no paths")
	}
	if httpio.MaxBody != 1<<20 {
		t.Errorf("httpio.MaxBody is %d; the document says 1 MiB", httpio.MaxBody)
	}
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadDoc(t)
	n := 0
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				n++
				s, ok := ref.(string)
				if !ok {
					t.Errorf("%s: $ref is not a string", path)
				} else if _, ok := resolvePointer(doc, s); !ok {
					t.Errorf("%s: $ref %s does not resolve", path, s)
				}
			}
			for k, x := range v {
				walk(path+"/"+k, x)
			}
		case []any:
			for i, x := range v {
				walk(path+"/"+strconv.Itoa(i), x)
			}
		}
	}
	walk("#", doc)
	if n == 0 {
		t.Error("no $ref at all")
	}
}

// TestOpenAPIRoutes checks that the document and routes.go list the same
// routes, with the path parameters, status codes, request bodies and
// security their handlers need.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadDoc(t)
	fset, files := parsePackage(t)
	paths := mapOf(doc["paths"])
	schemes := mapOf(mapOf(doc["components"])["securitySchemes"])
	routed := map[string]bool{}
	opIDs := map[string]string{}

	for _, r := range registeredRoutes(t, fset, files) {
		path, ok := documented(r)
		if !ok {
			continue
		}
		if r.method == "" {
			if r.path != "/api/" {
				t.Errorf("%s: pattern %q has no method; register each method separately so it can be documented", r.pos, r.path)
			}
			continue
		}
		key := r.method + " " + path
		if routed[key] {
			t.Errorf("%s: %s registered twice", r.pos, key)
		}
		routed[key] = true
		item := mapOf(paths[path])
		op := mapOf(item[strings.ToLower(r.method)])
		if op == nil {
			t.Errorf("%s: route %s %s is not documented in openapi.json (paths[%q].%s)", r.pos, r.method, r.path, path, strings.ToLower(r.method))
			continue
		}

		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s: no operationId", key)
		} else if prev, dup := opIDs[id]; dup {
			t.Errorf("%s: operationId %s is also used by %s", key, id, prev)
		}
		opIDs[id] = key
		if s, _ := op["summary"].(string); s == "" {
			t.Errorf("%s: no summary", key)
		}

		// Path parameters.
		want := map[string]bool{}
		for _, m := range pathParamRE.FindAllStringSubmatch(path, -1) {
			want[m[1]] = true
		}
		got := map[string]bool{}
		var params []any
		params = append(params, listOf(item["parameters"])...)
		params = append(params, listOf(op["parameters"])...)
		for _, p := range params {
			pm := deref(t, doc, p)
			name, _ := pm["name"].(string)
			if pm["in"] == "path" {
				got[name] = true
				if pm["required"] != true {
					t.Errorf("%s: path parameter %s must be required", key, name)
				}
			}
			if pm["schema"] == nil {
				t.Errorf("%s: parameter %s has no schema", key, name)
			}
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: path parameters %v, documented %v", key, keys(want), keys(got))
		}

		// Responses.
		resps := mapOf(op["responses"])
		if r.body == nil {
			t.Errorf("%s: cannot find handler %q of %s", r.pos, r.handler, key)
			continue
		}
		wantCodes := successCodes(r.body)
		var gotCodes []string
		for code := range resps {
			if strings.HasPrefix(code, "2") {
				gotCodes = append(gotCodes, code)
			}
		}
		sort.Strings(gotCodes)
		if !slices.Equal(wantCodes, gotCodes) {
			t.Errorf("%s: handler %s writes %v, documented %v", key, r.handler, wantCodes, gotCodes)
		}
		for code, resp := range resps {
			rm := deref(t, doc, resp)
			if d, _ := rm["description"].(string); d == "" {
				t.Errorf("%s: response %s has no description", key, code)
			}
			if strings.HasPrefix(code, "2") {
				continue
			}
			if !reflect.DeepEqual(mapOf(mapOf(mapOf(rm["content"])["application/json"])["schema"]), schemaRef("Error")) {
				t.Errorf("%s: response %s must be the Error schema", key, code)
			}
			if n, err := strconv.Atoi(code); err != nil || statusCode(n) == "" {
				t.Errorf("%s: response %s is not a status the server writes", key, code)
			}
		}

		// Request body: exactly the fields the handler decodes.
		body, bodyFields := decodedBody(t, r.handler, r.body)
		rb := op["requestBody"]
		switch {
		case body == "" && rb != nil:
			t.Errorf("%s: documents a request body, but %s decodes none", key, r.handler)
		case body != "" && rb == nil:
			t.Errorf("%s: %s decodes a %s, but no requestBody is documented", key, r.handler, body)
		case body != "":
			rbm := deref(t, doc, rb)
			if rbm["required"] != true {
				t.Errorf("%s: requestBody must be required", key)
			}
			schema := mapOf(mapOf(mapOf(rbm["content"])["application/json"])["schema"])
			if schema == nil {
				t.Errorf("%s: requestBody has no application/json schema", key)
				break
			}
			checkFields(t, doc, key+" request body ("+body+")", schema, bodyFields, false)
			checkClosed(t, doc, key+" request body", schema, map[string]bool{})
			for _, code := range []string{"400", "413"} {
				if resps[code] == nil {
					t.Errorf("%s: takes a body but documents no %s response", key, code)
				}
			}
		}

		// Security.
		sec, ok := op["security"]
		if !ok {
			sec = doc["security"]
		}
		reqs := listOf(sec)
		if path == "/healthz" || strings.HasPrefix(path, "/api/v1/sso/") { // their codes are their credentials
			if !ok || len(reqs) != 0 {
				t.Errorf("%s: must say security: [] (unauthenticated)", key)
			}
			continue
		}
		if len(reqs) == 0 {
			t.Errorf("%s: needs a bearer token but documents no security requirement", key)
		}
		for _, req := range reqs {
			if len(mapOf(req)) == 0 {
				t.Errorf("%s: an empty security requirement makes authentication optional", key)
			}
			for name := range mapOf(req) {
				s := mapOf(schemes[name])
				if s["type"] != "http" || s["scheme"] != "bearer" {
					t.Errorf("%s: security scheme %q is not an http bearer scheme", key, name)
				}
			}
		}
		for _, code := range []string{"401", "500"} {
			if resps[code] == nil {
				t.Errorf("%s: documents no %s response", key, code)
			}
		}
	}

	// Nothing documented that is not served.
	for path, item := range paths {
		for method := range mapOf(item) {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				if key := strings.ToUpper(method) + " " + path; !routed[key] {
					t.Errorf("openapi.json documents %s, which routes.go does not register", key)
				}
			}
		}
	}

	// The agent-only and enrollment endpoints name the credential they need.
	for key, scheme := range map[string]string{
		"POST /api/v1/agent/enroll":       "enrollmentToken",
		"GET /api/v1/agent/desired-state": "agentToken",
		"POST /api/v1/agent/report":       "agentToken",
		"POST /api/v1/agent/events":       "agentToken",
	} {
		m, p, _ := strings.Cut(key, " ")
		op := mapOf(mapOf(paths[p])[strings.ToLower(m)])
		if !reflect.DeepEqual(listOf(op["security"]), []any{map[string]any{scheme: []any{}}}) {
			t.Errorf("%s: security must be [{%q: []}], got %v", key, scheme, op["security"])
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// statusCode maps the statuses the server writes to their names.
func statusCode(n int) string {
	for name, code := range map[string]int{
		"StatusOK": http.StatusOK, "StatusCreated": http.StatusCreated, "StatusNoContent": http.StatusNoContent,
		"StatusBadRequest": 400, "StatusUnauthorized": 401, "StatusForbidden": 403, "StatusNotFound": 404,
		"StatusConflict": 409, "StatusRequestEntityTooLarge": 413, "StatusTooManyRequests": 429,
		"StatusInternalServerError": 500, "StatusServiceUnavailable": 503,
	} {
		if code == n {
			return name
		}
	}
	return ""
}

// successCodes returns the 2xx statuses a handler writes: the http.Status
// constants it names, or 200 when it names none (a bare Write).
func successCodes(body *ast.BlockStmt) []string {
	set := map[string]bool{}
	ast.Inspect(body, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); ok && x.Name == "http" {
			switch sel.Sel.Name {
			case "StatusOK":
				set["200"] = true
			case "StatusCreated":
				set["201"] = true
			case "StatusAccepted":
				set["202"] = true
			case "StatusNoContent":
				set["204"] = true
			}
		}
		return true
	})
	if len(set) == 0 {
		set["200"] = true
	}
	return keys(set)
}

// goField is one JSON field of a Go struct.
type goField struct {
	name      string
	omitempty bool
	jsonType  string // string, integer, boolean, array, object, or "" for any
}

// decodedBody finds decode(w, r, &v) in a handler and returns v's type
// and its JSON fields.
func decodedBody(t *testing.T, handler string, body *ast.BlockStmt) (string, []goField) {
	t.Helper()
	var target string
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "decode" && len(call.Args) == 3 {
			if u, ok := call.Args[2].(*ast.UnaryExpr); ok && u.Op == token.AND {
				if id, ok := u.X.(*ast.Ident); ok {
					target = id.Name
					return false
				}
			}
			t.Errorf("%s: decode's target is not &variable; this test cannot check it", handler)
		}
		return true
	})
	if target == "" {
		return "", nil
	}
	var typ ast.Expr
	ast.Inspect(body, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && vs.Type != nil {
			for _, name := range vs.Names {
				if name.Name == target {
					typ = vs.Type
				}
			}
		}
		return typ == nil
	})
	switch tx := typ.(type) {
	case nil:
		t.Errorf("%s: cannot find the declaration of %s", handler, target)
		return "?", nil
	case *ast.StructType:
		var fields []goField
		for _, f := range tx.Fields.List {
			tag := ""
			if f.Tag != nil {
				s, _ := strconv.Unquote(f.Tag.Value)
				tag = reflect.StructTag(s).Get("json")
			}
			name, opts, _ := strings.Cut(tag, ",")
			for _, n := range f.Names {
				if !n.IsExported() || name == "-" {
					continue
				}
				fn := name
				if fn == "" {
					fn = n.Name
				}
				fields = append(fields, goField{name: fn, omitempty: strings.Contains(opts, "omitempty"), jsonType: astJSONType(f.Type)})
			}
		}
		return "anonymous struct", fields
	default:
		var b strings.Builder
		if sel, ok := typ.(*ast.SelectorExpr); ok {
			b.WriteString(sel.X.(*ast.Ident).Name + "." + sel.Sel.Name)
		} else if id, ok := typ.(*ast.Ident); ok {
			b.WriteString(id.Name)
		}
		name := b.String()
		rt, ok := namedBodyTypes[name]
		if !ok {
			t.Errorf("%s decodes a %q; add it to namedBodyTypes", handler, name)
			return name, nil
		}
		return name, jsonFields(rt)
	}
}

func astJSONType(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		switch e.Name {
		case "string":
			return "string"
		case "bool":
			return "boolean"
		case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
			return "integer"
		}
	case *ast.ArrayType:
		return "array"
	case *ast.MapType:
		return "object"
	}
	return ""
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// jsonFields lists the JSON fields of a struct type as encoding/json sees
// them, embedded structs flattened.
func jsonFields(rt reflect.Type) []goField {
	var out []goField
	for _, f := range reflect.VisibleFields(rt) {
		if !f.IsExported() || len(f.Index) > 1 && !embeddedPath(rt, f.Index) {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			continue // flattened: its fields are visible themselves
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, goField{name: name, omitempty: strings.Contains(opts, "omitempty"), jsonType: goJSONType(f.Type)})
	}
	return out
}

// embeddedPath reports whether every step but the last of index goes
// through an untagged embedded struct, as encoding/json flattens.
func embeddedPath(rt reflect.Type, index []int) bool {
	for _, i := range index[:len(index)-1] {
		f := rt.Field(i)
		if !f.Anonymous || f.Tag.Get("json") != "" {
			return false
		}
		rt = f.Type
	}
	return true
}

func goJSONType(rt reflect.Type) string {
	if rt == rawType {
		return ""
	}
	for rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	if rt == timeType {
		return "string"
	}
	switch rt.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return ""
}

// checkFields compares a schema's properties with Go fields: the same
// names, compatible types and, for responses, required exactly when the
// field is always present.
func checkFields(t *testing.T, doc apiDoc, what string, schema any, fields []goField, checkRequired bool) {
	t.Helper()
	props, required := schemaProps(t, doc, schema)
	names := map[string]bool{}
	for _, f := range fields {
		names[f.name] = true
		p, ok := props[f.name]
		if !ok {
			t.Errorf("%s: Go field %q is not in the schema", what, f.name)
			continue
		}
		ps := deref(t, doc, p)
		if len(listOf(ps["allOf"])) == 0 {
			st, _ := ps["type"].(string)
			if f.jsonType == "" && st != "" {
				t.Errorf("%s.%s: any JSON value, but the schema says %s", what, f.name, st)
			}
			if f.jsonType != "" && st != f.jsonType {
				t.Errorf("%s.%s: Go encodes a JSON %s, the schema says %q", what, f.name, f.jsonType, st)
			}
		}
		if checkRequired && required[f.name] == f.omitempty {
			t.Errorf("%s.%s: required must be %v (omitempty %v)", what, f.name, !f.omitempty, f.omitempty)
		}
	}
	for p := range props {
		if !names[p] {
			t.Errorf("%s: schema property %q is not a field of the Go type", what, p)
		}
	}
	for r := range required {
		if !names[r] {
			t.Errorf("%s: required %q is not a field", what, r)
		}
	}
}

// checkClosed checks that every object schema reachable from a request
// body refuses unknown properties, as the server does.
func checkClosed(t *testing.T, doc apiDoc, what string, v any, seen map[string]bool) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	if ref, ok := m["$ref"].(string); ok {
		if seen[ref] {
			return
		}
		seen[ref] = true
		checkClosed(t, doc, what+" → "+ref, deref(t, doc, m), seen)
		return
	}
	if _, ok := m["properties"]; ok && m["additionalProperties"] != false {
		t.Errorf("%s: object schema must have additionalProperties: false (the server refuses unknown fields)", what)
	}
	for _, k := range []string{"properties", "items", "additionalProperties", "allOf", "oneOf", "anyOf"} {
		switch x := m[k].(type) {
		case map[string]any:
			if k == "properties" {
				for name, p := range x {
					checkClosed(t, doc, what+"."+name, p, seen)
				}
			} else {
				checkClosed(t, doc, what, x, seen)
			}
		case []any:
			for _, p := range x {
				checkClosed(t, doc, what, p, seen)
			}
		}
	}
}

// TestOpenAPISchemasMatchGo checks every component schema tied to a Go
// type against that type's JSON fields.
func TestOpenAPISchemasMatchGo(t *testing.T) {
	doc := loadDoc(t)
	schemas := mapOf(mapOf(doc["components"])["schemas"])
	for _, name := range []string{"AccessRequest", "PortRule", "NewVM", "VM", "VMView", "Policy", "Request", "Grant",
		"Event", "Verification", "User", "Token", "CreatedToken", "RoleBinding", "DesiredState", "Report", "Recommendation", "Error"} {
		if schemas[name] == nil {
			t.Errorf("components.schemas.%s is missing", name)
		}
	}
	for name, st := range schemaTypes {
		if schemas[name] == nil {
			t.Errorf("components.schemas.%s is missing", name)
			continue
		}
		checkFields(t, doc, name, schemaRef(name), jsonFields(st.typ), !st.request && !st.shared)
		if st.request {
			checkClosed(t, doc, name, schemaRef(name), map[string]bool{})
		}
	}
	detail, _ := schemaProps(t, doc, schemaRef("Error"))
	checkFields(t, doc, "Error.error", detail["error"], jsonFields(reflect.TypeFor[httpio.ErrorDetail]()), true)

	// Every list response is {"value": [...]}, with the next page's
	// cursor when it pages.
	for name, s := range schemas {
		if !strings.HasSuffix(name, "List") {
			continue
		}
		props, req := schemaProps(t, doc, s)
		next, paged := props["next"]
		if len(props) != 1+btoi(paged) || mapOf(props["value"])["type"] != "array" || !req["value"] || paged && (mapOf(next)["type"] != "string" || req["next"]) {
			t.Errorf("%s: a list must be {\"value\": [...]} with value required, and an optional string next", name)
		}
	}
}

// TestOpenAPIConstraints ties the documented constraints to the code's.
func TestOpenAPIConstraints(t *testing.T) {
	doc := loadDoc(t)
	schema := func(path ...string) map[string]any {
		t.Helper()
		var cur any = doc
		for _, p := range path {
			cur = deref(t, doc, cur)[p]
			if cur == nil {
				t.Fatalf("%s: missing", strings.Join(path, "."))
			}
		}
		return deref(t, doc, cur)
	}
	enum := func(m map[string]any) []string {
		var out []string
		for _, v := range listOf(m["enum"]) {
			out = append(out, v.(string))
		}
		sort.Strings(out)
		return out
	}
	param := func(name string) map[string]any { return schema("components", "parameters", name, "schema") }
	prop := func(s, p string) map[string]any { return schema("components", "schemas", s, "properties", p) }
	sorted := func(s ...string) []string { sort.Strings(s); return s }

	for _, c := range []struct {
		what string
		got  []string
		want []string
	}{
		{"jit filter", enum(param("JITFilter")), sorted(jit.JITConfigured, jit.JITNotConfigured, jit.JITUnsupported)},
		{"status filter", enum(param("StatusFilter")), sorted(jit.GrantActive, jit.GrantExpired, jit.GrantRevoked, jit.GrantSuperseded)},
		{"format", enum(param("Format")), sorted("json", "jsonl", "csv")},
		{"PortRule.protocol", enum(prop("PortRule", "protocol")), sorted(jit.ProtoTCP, jit.ProtoUDP, jit.ProtoAny)},
		{"PortRequest.protocol", enum(prop("PortRequest", "protocol")), sorted(jit.ProtoTCP, jit.ProtoUDP, jit.ProtoAny)},
		{"Grant.status", enum(prop("Grant", "status")), sorted(jit.GrantActive, jit.GrantExpired, jit.GrantRevoked, jit.GrantSuperseded)},
		{"Token.kind", enum(prop("Token", "kind")), sorted(jit.TokenUser, jit.TokenAgent, jit.TokenEnroll)},
		{"NewVM.backend", enum(prop("NewVM", "backend")), sorted(jit.Backends...)},
		{"Error.code", enum(schema("components", "schemas", "Error", "properties", "error", "properties", "code")), sorted(httpio.Codes()...)},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: enum %v, want %v", c.what, c.got, c.want)
		}
	}
	for _, role := range enum(prop("RoleBinding", "role")) {
		if err := jit.ValidRole(role); err != nil {
			t.Errorf("RoleBinding.role: %v", err)
		}
	}

	num := func(m map[string]any, k string) float64 {
		f, ok := m[k].(float64)
		if !ok {
			t.Errorf("%v has no %s", m, k)
		}
		return f
	}
	for _, s := range []string{"PortRule", "PortRequest"} {
		p := prop(s, "number")
		if num(p, "minimum") != 1 || num(p, "maximum") != 65535 {
			t.Errorf("%s.number must be 1..65535", s)
		}
	}
	if num(param("EventLimit"), "maximum") != control.MaxEventPage {
		t.Errorf("activity limit maximum must be control.MaxEventPage")
	}
	if num(prop("AccessRequest", "justification"), "maxLength") != jit.MaxJustification {
		t.Errorf("justification maxLength must be jit.MaxJustification")
	}
	for _, p := range []string{"Since", "Until"} {
		if param(p)["format"] != "date-time" {
			t.Errorf("%s must be an RFC 3339 date-time", p)
		}
	}

	// ISO 8601 durations: the pattern accepts what the server parses.
	mrad := prop("PortRule", "maxRequestAccessDuration")
	if mrad["x-minimum"] != jit.FormatISODuration(jit.MinMaxDuration) || mrad["x-maximum"] != jit.FormatISODuration(jit.MaxMaxDuration) ||
		mrad["default"] != jit.FormatISODuration(jit.DefaultMaxDuration) {
		t.Errorf("maxRequestAccessDuration bounds and default must be %s..%s, %s", jit.FormatISODuration(jit.MinMaxDuration),
			jit.FormatISODuration(jit.MaxMaxDuration), jit.FormatISODuration(jit.DefaultMaxDuration))
	}
	for _, d := range []map[string]any{mrad, prop("PortRequest", "duration"), prop("NewToken", "ttl"), prop("NewEnrollToken", "ttl")} {
		pat, _ := d["pattern"].(string)
		re, err := regexp.Compile(pat)
		if err != nil {
			t.Fatalf("duration pattern %q: %v", pat, err)
		}
		for _, s := range []string{"PT3H", "PT5M", "PT24H", "PT1H30M", "P1D", "PT0.5S", "pt5m", "P1W", "P1DT2H"} {
			if _, err := jit.ParseISODuration(s); err != nil {
				t.Fatalf("sample %s: %v", s, err)
			}
			if !re.MatchString(s) {
				t.Errorf("duration pattern %q refuses %s, which the server accepts", pat, s)
			}
		}
		for _, s := range []string{"", "P", "PT", "3h", "1H", "PT3", "P3H", "PTH"} {
			if _, err := jit.ParseISODuration(s); err == nil {
				t.Fatalf("sample %q parses", s)
			}
			if re.MatchString(s) {
				t.Errorf("duration pattern %q accepts %q, which the server refuses", pat, s)
			}
		}
	}
}

// TestOpenAPIServed checks that the route serves the embedded document.
func TestOpenAPIServed(t *testing.T) {
	w := httptest.NewRecorder()
	if err := (&Server{}).openapi(w, httptest.NewRequest("GET", "/api/v1/openapi.json", nil), nil); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || !bytes.Equal(w.Body.Bytes(), openapiDoc) {
		t.Errorf("GET /api/v1/openapi.json: %d %q, %d bytes", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
}
