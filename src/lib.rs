//! grpcore
