//! Throwaway MariaDB servers.
