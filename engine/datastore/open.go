package datastore

import (
	"fmt"

	"github.com/metaflow-r/metaflow/internal/mfconfig"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// Open returns the datastore Metaflow's settings select (the environment,
// then the config file): METAFLOW_DEFAULT_DATASTORE local (the default) is
// the folder localRoot; s3 is METAFLOW_DATASTORE_SYSROOT_S3, with its local
// cache in localRoot (CacheDir).
func Open(localRoot string) (Store, error) {
	get, err := mfconfig.Lookup()
	if err != nil {
		return nil, err
	}
	switch kind := get("METAFLOW_DEFAULT_DATASTORE"); kind {
	case "", "local":
		return NewLocal(localRoot), nil
	case "s3":
		root := get("METAFLOW_DATASTORE_SYSROOT_S3")
		if root == "" {
			return nil, fmt.Errorf("METAFLOW_DEFAULT_DATASTORE is s3 but METAFLOW_DATASTORE_SYSROOT_S3 is not set: set it to s3://bucket/prefix")
		}
		bucket, prefix, err := s3io.ParseURL(root)
		if err != nil {
			return nil, fmt.Errorf("METAFLOW_DATASTORE_SYSROOT_S3: %w", err)
		}
		c, err := s3io.Default()
		if err != nil {
			return nil, err
		}
		return NewS3(c, root, CacheDir(localRoot, bucket, prefix))
	default:
		return nil, fmt.Errorf("METAFLOW_DEFAULT_DATASTORE is %q: use local or s3", kind)
	}
}
