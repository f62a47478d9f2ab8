// Package sqlstore is the SQL engine the database adapters (store/sqlite,
// store/postgres) share: the one SQL implementation of store.Tx (SQLTx,
// one file per entity), group commit of many updates in one transaction
// (Batcher), the connection that sends an update's statements pipelined
// (Conn over a Pipe), what differs between databases (Dialect), and the
// schema's forward migrations.
package sqlstore
