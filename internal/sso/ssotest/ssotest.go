// Package ssotest runs a real OpenID provider on loopback for tests: the
// OpenID-certified github.com/zitadel/oidc op package over its example
// in-memory storage, with users whose groups a test changes, a login
// form, and a switch that takes it down. Only tests link it.
package ssotest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Client credentials ajard is given for the provider.
const (
	ClientID     = "ajar-console"
	ClientSecret = "ajar-console-secret-0123456789"
	Password     = "provider-password-1"
)

// Provider is a running OpenID provider.
type Provider struct {
	Issuer string
	srv    *http.Server
	st     *groupStorage
	mu     sync.Mutex
	down   bool
}

// Start starts a provider on a loopback port whose client ClientID may
// redirect to each of redirectURIs (more can be added with Allow). Users
// are given by name; each has Password and subject "sub-<name>".
func Start(t testing.TB, users ...string) *Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Issuer: "http://" + ln.Addr().String()}
	us := userStore{users: map[string]*storage.User{}}
	for _, u := range users {
		us.users["sub-"+u] = &storage.User{ID: "sub-" + u, Username: u, Password: Password, FirstName: u, LastName: "Test",
			Email: u + "@example.com", EmailVerified: true, PreferredLanguage: language.English}
	}
	web := storage.WebClient(ClientID, ClientSecret)
	client := &allowedClient{Client: web, redirects: nil}
	// Known to the example storage too, which keeps device codes only for
	// clients it holds.
	p.st = &groupStorage{Storage: storage.NewStorageWithClients(us, map[string]*storage.Client{ClientID: web}), client: client, groups: map[string][]string{}, keys: []*rsaKey{newKey(1)}}
	h := exampleop.SetupServer(p.Issuer, p.st, nil, false)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// Allow lets the client redirect to uri.
func (p *Provider) Allow(uri string) {
	c := p.st.client
	c.mu.Lock()
	defer c.mu.Unlock()
	c.redirects = append(c.redirects, uri)
}

// SetGroups sets the groups claim of user.
func (p *Provider) SetGroups(user string, groups ...string) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.groups["sub-"+user] = groups
}

// SetDown makes every request to the provider fail (503) or work again.
func (p *Provider) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// LoginForm is the provider's login form: where to post the user name
// and password, and the auth request id to send with them, read from the
// login page's URL.
func LoginForm(loginPage *url.URL, user string) (string, url.Values) {
	u := *loginPage
	u.RawQuery = ""
	return u.String(), url.Values{"id": {loginPage.Query().Get("authRequestID")}, "username": {user}, "password": {Password}}
}

type userStore struct{ users map[string]*storage.User }

func (u userStore) GetUserByID(id string) *storage.User { return u.users[id] }
func (u userStore) ExampleClientID() string             { return "service" }
func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, v := range u.users {
		if v.Username == name {
			return v
		}
	}
	return nil
}

// groupStorage adds a groups claim (scope "groups") to the example
// storage, and serves the one client.
type groupStorage struct {
	*storage.Storage
	client *allowedClient
	mu     sync.Mutex
	groups map[string][]string
	keys   []*rsaKey // the signing key first; all published
}

// rsaKey is a signing key and its published public half.
type rsaKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *rsaKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *rsaKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k *rsaKey) Use() string                                 { return "sig" }
func (k *rsaKey) ID() string                                  { return k.id }
func (k *rsaKey) Key() any                                    { return k.key }

type publicKey struct{ *rsaKey }

func (k publicKey) Key() any { return &k.key.PublicKey }

func newKey(n int) *rsaKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return &rsaKey{id: fmt.Sprintf("key-%d", n), key: k}
}

// RotateKey makes a new signing key; the old one stays published.
func (p *Provider) RotateKey() {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.keys = append([]*rsaKey{newKey(len(p.st.keys) + 1)}, p.st.keys...)
}

func (s *groupStorage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[0], nil
}

func (s *groupStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *groupStorage) KeySet(ctx context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]op.Key, len(s.keys))
	for i, k := range s.keys {
		out[i] = publicKey{k}
	}
	return out, nil
}

func (s *groupStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	if id != ClientID {
		return s.Storage.GetClientByClientID(ctx, id)
	}
	return s.client, nil
}

func (s *groupStorage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	if id != ClientID || secret != ClientSecret {
		return oidc.ErrInvalidClient()
	}
	return nil
}

func (s *groupStorage) SetUserinfoFromScopes(ctx context.Context, ui *oidc.UserInfo, userID, clientID string, scopes []string) error {
	return s.addGroups(ui, userID, scopes)
}

func (s *groupStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	return s.addGroups(ui, ui.Subject, []string{"groups"})
}

func (s *groupStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	return s.addGroups(ui, req.GetSubject(), scopes)
}

// CompleteDeviceAuthorization approves a device code for the user named
// (the example storage would take the name for the subject).
func (s *groupStorage) CompleteDeviceAuthorization(ctx context.Context, userCode, username string) error {
	return s.Storage.CompleteDeviceAuthorization(ctx, userCode, "sub-"+username)
}

func (s *groupStorage) addGroups(ui *oidc.UserInfo, subject string, scopes []string) error {
	if !slices.Contains(scopes, "groups") {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ui.AppendClaims("groups", append([]string{}, s.groups[subject]...))
	return nil
}

// allowedClient is the example's web client with redirect URIs the test
// adds and the groups scope allowed.
type allowedClient struct {
	*storage.Client
	mu        sync.Mutex
	redirects []string
}

func (c *allowedClient) RedirectURIs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.redirects)
}

// GrantTypes adds the device authorization grant to the web client's.
func (c *allowedClient) GrantTypes() []oidc.GrantType {
	return append(c.Client.GrantTypes(), oidc.GrantTypeDeviceCode)
}

func (c *allowedClient) IsScopeAllowed(scope string) bool {
	return scope == "groups" || strings.HasPrefix(scope, "custom")
}

// SignIn plays a browser (hc, keeping cookies and following redirects):
// it opens start (ajar's /signin/sso link), fills the provider's login
// form as user, and returns where the redirects back ended. When start
// does not lead to the provider's login form, it returns that answer.
func SignIn(t testing.TB, hc *http.Client, start, user string) *http.Response {
	t.Helper()
	resp, err := hc.Get(start)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Request.URL.Path, "/login/") {
		return resp
	}
	resp.Body.Close()
	to, form := LoginForm(resp.Request.URL, user)
	resp, err = hc.PostForm(to, form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// ApproveDevice plays a person at the provider's device page (hc keeping
// cookies): it enters userCode, signs in as user and allows the device
// (or denies it when allow is false).
func ApproveDevice(t testing.TB, hc *http.Client, verificationURI, userCode, user string, allow bool) {
	t.Helper()
	base := strings.TrimRight(verificationURI, "/")
	resp, err := hc.PostForm(base+"/login", url.Values{"user_code": {userCode}, "username": {user}, "password": {Password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/device/login" {
		t.Fatalf("device login at the provider: %s, ended at %s", resp.Status, resp.Request.URL)
	}
	action := "allowed"
	if !allow {
		action = "denied"
	}
	resp, err = hc.PostForm(base+"/confirm", url.Values{"action": {action}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "Device authorization "+action) {
		t.Fatalf("device confirmation at the provider: %s %s", resp.Status, b)
	}
}
