package pglocal_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/profiles/pglocal"
)

// A server without a configured database keeps one in its state directory;
// a restart finds the data again.
func ExampleStart() {
	ctx := context.Background()
	cluster, err := pglocal.Start(ctx, pglocal.Config{
		Dir: filepath.Join(os.TempDir(), "dialogwerk-example"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Stop(ctx)

	pool, err := pgxpool.New(ctx, cluster.ConnString())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	var fsync string
	if err := pool.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
		log.Fatal(err)
	}
	fmt.Println("fsync", fsync)
}
