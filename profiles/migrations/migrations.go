// Package migrations holds Dialogwerk's database schema as embedded SQL files
// and applies them with goose. One schema serves profiles, consents and the
// engine's records (events, decisions, messages).
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed sql/*.sql
var files embed.FS

// Up applies all pending migrations to the database behind pool and returns
// the number applied.
func Up(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	return up(ctx, db)
}

func up(ctx context.Context, db *sql.DB) (int, error) {
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		return 0, fmt.Errorf("opening embedded migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub)
	if err != nil {
		return 0, fmt.Errorf("preparing migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("applying migrations: %w", err)
	}
	return len(res), nil
}
