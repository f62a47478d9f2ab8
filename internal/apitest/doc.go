// Package apitest is the end-to-end test suite of ajard's REST API. Its
// tests start the real ajard binary (through ajardtest) on a loopback port
// with a fresh SQLite database and drive it over HTTP, with the Go client
// for ordinary calls and raw net/http for malformed ones: the full story
// from policy to expiry, every bad input, the authorization matrix, restarts
// with grants in flight, a tampered activity log, unauthenticated access and
// the agents' endpoints. The package has no non-test code.
package apitest
