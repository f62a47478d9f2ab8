// Package replicatest holds the end-to-end tests of several ajard replicas
// sharing one PostgreSQL database: a change made through one replica
// reaches an agent watching through another, concurrent requests split
// across replicas are neither lost nor duplicated, a replica killed with
// SIGKILL loses nothing it acknowledged, and grant expiry happens exactly
// once. The tests start the real ajard binary (internal/ajardtest) on a
// fresh database (internal/store/postgres/pgtest); they skip without
// AJAR_TEST_POSTGRES except under CI=true.
package replicatest
