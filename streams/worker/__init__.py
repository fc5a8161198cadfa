"""The Faust worker on top of the rooms: the app factory, the JSON API and dashboard, query parsing,
policy reload. Rooms never import it."""
