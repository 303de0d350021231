-- A small registry with the schema of the reference world: a chain 18 -> 19 -> 20 of topic
-- "gates" (the file named for 18 belongs to 19, the one named for 19 to 20), a swap of topic
-- "risks" between 21 and 22, and two correctly named scripts the sync must leave alone.
-- Hooks: one per script, plus a second hook naming a chain script.
SET NAMES utf8mb4;

DROP TABLE IF EXISTS protocol_hooks;
DROP TABLE IF EXISTS scripts;

CREATE TABLE scripts (
  id INT AUTO_INCREMENT PRIMARY KEY,
  protocol INT NOT NULL,
  name VARCHAR(255) NOT NULL UNIQUE,
  path VARCHAR(512) NOT NULL,
  checksum CHAR(64) NOT NULL,
  updated_at TIMESTAMP NOT NULL DEFAULT '2025-11-01 00:00:00'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE protocol_hooks (
  id INT AUTO_INCREMENT PRIMARY KEY,
  protocol INT NOT NULL,
  hook VARCHAR(64) NOT NULL,
  script_name VARCHAR(255) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO scripts (id, protocol, name, path, checksum) VALUES
  (1, 19, 'validate-p18-gates.sh', 'scripts/validation/validate-p18-gates.sh', SHA2('19-gates', 256)),
  (2, 20, 'validate-p19-gates.sh', 'scripts/validation/validate-p19-gates.sh', SHA2('20-gates', 256)),
  (3, 21, 'validate-p22-risks.sh', 'scripts/validation/validate-p22-risks.sh', SHA2('21-risks', 256)),
  (4, 22, 'validate-p21-risks.sh', 'scripts/validation/validate-p21-risks.sh', SHA2('22-risks', 256)),
  (5, 18, 'validate-p18-lint.sh', 'scripts/validation/validate-p18-lint.sh', SHA2('18-lint', 256)),
  (6, 23, 'validate-p23-docs.sh', 'scripts/validation/validate-p23-docs.sh', SHA2('23-docs', 256));

INSERT INTO protocol_hooks (id, protocol, hook, script_name) VALUES
  (1, 19, 'pre-gate', 'validate-p18-gates.sh'),
  (2, 20, 'pre-gate', 'validate-p19-gates.sh'),
  (3, 21, 'post-gate', 'validate-p22-risks.sh'),
  (4, 22, 'post-gate', 'validate-p21-risks.sh'),
  (5, 18, 'pre-gate', 'validate-p18-lint.sh'),
  (6, 23, 'post-gate', 'validate-p23-docs.sh'),
  (7, 20, 'post-gate', 'validate-p19-gates.sh');
