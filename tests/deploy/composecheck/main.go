// compose-check loads a Compose file with compose-go, the loader of `docker compose` itself:
// the compose-spec JSON schema, interpolation, merges (<<), and the consistency checks (depends_on,
// volumes, networks named). It prints the normalized project as JSON, as `docker compose config
// --format json` does, and exits 1 with the loader's error when the file is not valid.
// Built by scripts/compose-check.sh; used by tests/deploy/test_compose.py. No Docker engine needed.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE...")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(
		os.Args[1:],
		cli.WithOsEnv,
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
	fmt.Println()
}
