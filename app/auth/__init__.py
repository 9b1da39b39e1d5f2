"""Who is asking, and whether they may: users, groups, service accounts and API
tokens in the metadata database; OCI bearer tokens signed by keys kept there too."""
