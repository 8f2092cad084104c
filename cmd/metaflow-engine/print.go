package main

import (
	"fmt"
	"io"
)

// printArtifact is replaced by the rvalue printer.
func printArtifact(w io.Writer, path string) error {
	return fmt.Errorf("printing artifacts is not built yet")
}
