# message: plain.eml
redirect "a1@example.org";
redirect "a2@example.org";
redirect "a3@example.org";
redirect "a4@example.org";
redirect "a5@example.org";
