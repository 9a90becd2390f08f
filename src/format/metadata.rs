//! mariabackup metadata files.
