package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// rRead is an Rscript that reads artifacts with the R client
// (task_client$new(pathspec)$artifact(name)) and prints, per artifact, "OK
// <md5 of its serialization>" or "ERROR <message>".
const rRead = `suppressPackageStartupMessages(library(metaflow))
a <- commandArgs(TRUE)
for (i in seq(1, length(a), by = 2)) {
  r <- tryCatch({
    x <- task_client$new(a[i])$artifact(a[i + 1])
    f <- tempfile()
    writeBin(serialize(x, NULL, version = 3), f)
    paste("OK", unname(tools::md5sum(f)))
  }, error = function(e) paste("ERROR", gsub("[\r\n]+", " ", conditionMessage(e))))
  cat(r, "\n", sep = "")
}
`

// rClientRead reads entries with the R client, through the reader engine;
// the answer per entry is "OK <md5>" or "ERROR <message>".
func (c *chain) rClientRead(entries []*entry) (map[string]string, error) {
	script := filepath.Join(c.dir, "read.R")
	if err := os.WriteFile(script, []byte(rRead), 0o644); err != nil {
		return nil, err
	}
	args := []string{script}
	for _, e := range entries {
		args = append(args, e.pathspec(), e.name)
	}
	env := append(append([]string{}, c.env...), "METAFLOW_ENGINE_ADDRESS=unix://"+c.s.reader.sock)
	c.clients++
	p, err := startProc(c.dir, filepath.Join(c.dir, fmt.Sprintf("read-%d.log", c.clients)), env, "Rscript", args...)
	if err != nil {
		return nil, err
	}
	code, ok := p.wait(2 * time.Minute)
	if !ok {
		p.kill()
		return nil, fmt.Errorf("the R client's reads did not end within 2 minutes")
	}
	var lines []string
	for _, l := range strings.Split(p.output(), "\n") {
		if strings.HasPrefix(l, "OK ") || strings.HasPrefix(l, "ERROR ") {
			lines = append(lines, l)
		}
	}
	if code != 0 || len(lines) != len(entries) {
		return nil, fmt.Errorf("the R client's reads failed (exit %d):\n%s", code, indent(p.tail(6)))
	}
	out := map[string]string{}
	for i, e := range entries {
		out[e.key()] = lines[i]
	}
	return out, nil
}
