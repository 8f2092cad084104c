package main

import (
	"fmt"
	"io"

	"github.com/metaflow-r/metaflow/engine/rvalue"
)

// printArtifact prints an R-value msgpack blob roughly as R's print() would.
func printArtifact(w io.Writer, path string) error {
	v, err := rvalue.DecodeFile(path)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, rvalue.Format(v))
	return err
}
