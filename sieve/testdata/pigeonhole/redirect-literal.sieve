# message: plain.eml
redirect "joe@[192.0.2.1]";
