"""The knowledge base (知识库): articles per category with a short spoken answer per language
and a longer text, an owner department and a review date; Chinese word segmentation and a
term index stored per article (segmentation.py, ranking.py), kept on SQLite and PostgreSQL
alike; what the desk, the console, the dashboard and the IVR ask of it (service.py,
ivr_topics.py)."""
