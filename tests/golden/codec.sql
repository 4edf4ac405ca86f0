-- faiss_encode / faiss_decode (SPEC §1) and Python-compatible JSON (SPEC §2).
.load ./dist/vekter
SELECT hex(faiss_encode('[2.4, 4.1, 1.8]'));
SELECT faiss_decode(X'9A991940333383406666E63F');
SELECT faiss_decode(faiss_encode('[1, 2, 3]'));
SELECT faiss_decode(faiss_encode('[0.00001, 1.5e-7, 3.4028234663852886e38, -0.0, 1e16, 123456.5]'));
SELECT faiss_decode(faiss_encode(' [ 1 ,2.5e1 ] '));
-- a JSON vector is also accepted by faiss_decode, a blob by faiss_encode
SELECT faiss_decode('[0.25, 30.25]');
SELECT hex(faiss_encode(X'0000803F'));
-- unaligned blob (substr of a longer blob)
SELECT faiss_decode(substr(X'FF0000803F00000040', 2));
SELECT typeof(faiss_encode('[1]')), length(faiss_encode('[1, 2, 3, 4]'));
-- every bad input is a clear error, never a crash
SELECT faiss_encode(NULL);
SELECT faiss_encode('');
SELECT faiss_encode('[]');
SELECT faiss_encode('[1, [2, 3]]');
SELECT faiss_encode('[1, "2"]');
SELECT faiss_encode('[NaN]');
SELECT faiss_encode('[Infinity]');
SELECT faiss_encode('[-Infinity]');
SELECT faiss_encode('[1e39]');
SELECT faiss_encode('[1,]');
SELECT faiss_encode('[1 2]');
SELECT faiss_encode('[1] trailing');
SELECT faiss_encode('{"a": 1}');
SELECT faiss_encode(42);
SELECT faiss_encode(4.5);
SELECT faiss_decode(X'000080');
SELECT faiss_decode(X'');
SELECT faiss_decode(X'0000C07F');
SELECT faiss_decode(X'0000807F');
SELECT faiss_decode(NULL);
SELECT faiss_encode('[1, 2]', 3);
SELECT faiss_encode(zeroblob(262148));
