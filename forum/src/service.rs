//! Which routes each of the four server binaries serves.

/// A resource of the forum API, the unit that moves from the monolith to an
/// extracted service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Users,
    Threads,
    Posts,
}

/// A server binary: its name (used in `--help`, logs and error messages) and the
/// resources whose routes it serves. Every service also serves `/`, `/api` and `/api/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub about: &'static str,
    pub resources: &'static [Resource],
}

impl Service {
    pub fn serves(&self, resource: Resource) -> bool {
        self.resources.contains(&resource)
    }
}

pub const MONOLITH: Service = Service {
    name: "monolith",
    about: "The forum monolith: serves every route of the forum API.",
    resources: &[Resource::Users, Resource::Threads, Resource::Posts],
};

pub const USERS: Service = Service {
    name: "users",
    about: "The extracted users service: serves /, /api and the /api/users routes.",
    resources: &[Resource::Users],
};

pub const THREADS: Service = Service {
    name: "threads",
    about: "The extracted threads service: serves /, /api and the /api/threads routes.",
    resources: &[Resource::Threads],
};

pub const POSTS: Service = Service {
    name: "posts",
    about: "The extracted posts service: serves /, /api and the /api/posts routes.",
    resources: &[Resource::Posts],
};
