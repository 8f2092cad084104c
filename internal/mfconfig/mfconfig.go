// Package mfconfig reads Metaflow's settings the way Metaflow does: the
// environment first, then the profile's config file.
package mfconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Lookup returns a lookup of Metaflow settings as Metaflow reads them: the
// environment first, then the config file $METAFLOW_HOME/config.json
// (config_$METAFLOW_PROFILE.json with a profile; METAFLOW_HOME defaults to
// ~/.metaflowconfig). String values come back as they are, other JSON values
// (such as an object for METAFLOW_BATCH_JOB_ENV) as their JSON text.
func Lookup() (func(string) string, error) {
	home := os.Getenv("METAFLOW_HOME")
	if home == "" {
		dir, err := os.UserHomeDir()
		if err != nil {
			return os.Getenv, nil // no home, no file: the environment alone
		}
		home = filepath.Join(dir, ".metaflowconfig")
	}
	name := "config.json"
	if p := os.Getenv("METAFLOW_PROFILE"); p != "" {
		name = "config_" + p + ".json"
	}
	path := filepath.Join(home, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return os.Getenv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Metaflow config %s: %w", path, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("Metaflow config %s is not a JSON object: %v", path, err)
	}
	file := map[string]string{}
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			file[k] = s
		} else {
			file[k] = string(v)
		}
	}
	return func(k string) string {
		if v, ok := os.LookupEnv(k); ok {
			return v
		}
		return file[k]
	}, nil
}
