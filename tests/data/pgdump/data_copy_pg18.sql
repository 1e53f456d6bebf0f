--
-- PostgreSQL database dump
--

\restrict 9Q9Udjv3GbcXDbQoxMec8uz8AsZBzVtt8nzAnIyXnuLmRc7fW8fNjFsmq8VQMUV

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 18.6

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Data for Name: customer; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.customer (id, email, full_name, updated_at) FROM stdin;
1	ann@example.com	Ann O'Brien	2024-01-01 10:00:00+00
2	bob@example.com	Bob Tab\tStop	2024-01-02 10:00:00+00
3	cy@example.com	Cy {{ Braces }}	2024-01-03 10:00:00+00
\.


--
-- Data for Name: orders; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.orders (id, customer_id, status, note) FROM stdin;
1	1	paid	two\nlines
2	2	cart	\N
3	1	shipped	gift
\.


--
-- Data for Name: product; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.product (id, sku, price) FROM stdin;
1	MUG	9.00
2	KETTLE	39.50
\.


--
-- Data for Name: order_line; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.order_line (order_id, product_id, quantity) FROM stdin;
1	1	2
1	2	1
3	1	1
\.


--
-- Data for Name: payment_2023; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.payment_2023 (id, order_id, paid_on, amount) FROM stdin;
1	1	2023-12-30	57.50
\.


--
-- Data for Name: payment_2024; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.payment_2024 (id, order_id, paid_on, amount) FROM stdin;
2	3	2024-01-05	9.00
\.


--
-- Name: customer_id_seq; Type: SEQUENCE SET; Schema: public; Owner: postgres
--

SELECT pg_catalog.setval('public.customer_id_seq', 3, true);


--
-- Name: orders_id_seq; Type: SEQUENCE SET; Schema: public; Owner: postgres
--

SELECT pg_catalog.setval('public.orders_id_seq', 3, true);


--
-- Name: product_id_seq; Type: SEQUENCE SET; Schema: public; Owner: postgres
--

SELECT pg_catalog.setval('public.product_id_seq', 2, true);


--
-- PostgreSQL database dump complete
--

\unrestrict 9Q9Udjv3GbcXDbQoxMec8uz8AsZBzVtt8nzAnIyXnuLmRc7fW8fNjFsmq8VQMUV

